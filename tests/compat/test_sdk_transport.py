"""Checks the SDK patch of :mod:`sdk_transport` against :mod:`fake_acquirer`, without paycode.

It proves that with the patch the SDK's own code signs requests that an independent verifier
accepts, sends the absolute-form request line, verifies every answer's signature, and rejects an
answer that was altered or signed with another key; and that TLS verification stays on.
"""

import json
import tempfile
import unittest

from com.alipay.ams.api.default_alipay_client import DefaultAlipayClient
from com.alipay.ams.api.exception.exception import AlipayApiException
from com.alipay.ams.api.request.pay.alipay_pay_query_request import AlipayPayQueryRequest
from com.alipay.ams.api.response.pay.alipay_pay_query_response import AlipayPayQueryResponse

import certs
import fake_acquirer
import sdk_transport

CLIENT_ID = "TEST_MERCHANT_CLIENT"


def answer(path, request):
    return {
        "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
        "paymentId": request.get("paymentId"),
        "paymentStatus": "SUCCESS",
    }


class SdkTransportSelfTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.ca, cls.cert, cls.key = certs.write_test_pki(cls.tmp.name)
        merchant_key, cls.merchant_pkcs8, _ = fake_acquirer.new_rsa_key()
        merchant_public = merchant_key.public_key()
        cls.fakes = {
            "https": fake_acquirer.FakeAcquirer(merchant_public, answer, cls.cert, cls.key),
            "http": fake_acquirer.FakeAcquirer(merchant_public, answer),
        }

    @classmethod
    def tearDownClass(cls):
        for fake in cls.fakes.values():
            fake.close()
        cls.tmp.cleanup()

    def setUp(self):
        sdk_transport.install(self.ca)

    def client(self, fake, public_key=None):
        return DefaultAlipayClient(
            fake.url, CLIENT_ID, self.merchant_pkcs8, public_key or fake.acquirer_public_b64
        )

    def inquiry(self, payment_id="PAY-1"):
        request = AlipayPayQueryRequest()
        request.payment_id = payment_id
        return request

    def test_signed_round_trip_over_tls_and_plain_http(self):
        for scheme, fake in self.fakes.items():
            with self.subTest(scheme=scheme), sdk_transport.VerifySpy() as spy:
                before = len(fake.requests)
                body = self.client(fake).execute(self.inquiry("PAY-%s" % scheme))
                response = AlipayPayQueryResponse(body)
                self.assertEqual(response.result.result_code, "SUCCESS")
                self.assertEqual(response.payment_id, "PAY-%s" % scheme)
                seen = fake.requests[before]
                self.assertTrue(seen["signature_ok"], "the SDK's request signature is wrong")
                self.assertEqual(seen["target"], fake.url + "/ams/api/v1/payments/inquiryPayment")
                self.assertEqual(seen["path"], "/ams/api/v1/payments/inquiryPayment")
                self.assertEqual(spy.count(), 1)
                self.assertIs(spy.last()[2], True)

    def test_sdk_pretty_prints_the_body_it_signs(self):
        fake = self.fakes["http"]
        before = len(fake.requests)
        self.client(fake).execute(self.inquiry())
        body = fake.requests[before]["body"].decode()
        self.assertIn("\n", body)
        self.assertEqual(json.loads(body), {"paymentId": "PAY-1"})

    def test_altered_body_is_rejected(self):
        def tamper(headers, body):
            return headers, body.replace(b"PAY-1", b"PAY-2")

        with sdk_transport.tampered_responses(tamper):
            with self.assertRaises(AlipayApiException) as caught:
                self.client(self.fakes["https"]).execute(self.inquiry())
        self.assertIn("verify", str(caught.exception))

    def test_altered_signature_is_rejected(self):
        def tamper(headers, body):
            out = []
            for name, value in headers:
                if name == "signature":
                    head, sig = value.split("signature=", 1)
                    flipped = ("B" if sig[0] == "A" else "A") + sig[1:]
                    value = head + "signature=" + flipped
                out.append((name, value))
            return out, body

        with sdk_transport.tampered_responses(tamper):
            with self.assertRaises(AlipayApiException):
                self.client(self.fakes["https"]).execute(self.inquiry())

    def test_missing_signature_header_is_rejected(self):
        def tamper(headers, body):
            return [(n, v) for n, v in headers if n != "signature"], body

        with sdk_transport.tampered_responses(tamper):
            with self.assertRaises(AlipayApiException) as caught:
                self.client(self.fakes["https"]).execute(self.inquiry())
        self.assertIn("signature not exist", str(caught.exception))

    def test_answer_signed_with_another_key_is_rejected(self):
        _, _, other_public = fake_acquirer.new_rsa_key()
        with self.assertRaises(AlipayApiException):
            self.client(self.fakes["https"], other_public).execute(self.inquiry())

    def test_tls_certificate_is_verified(self):
        sdk_transport.install(None)  # system roots only: the test CA is not trusted
        with self.assertRaises(AlipayApiException) as caught:
            self.client(self.fakes["https"]).execute(self.inquiry())
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(caught.exception))
