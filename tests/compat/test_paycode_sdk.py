"""The official merchant SDK (global-open-sdk-python 1.7.1) as a real merchant against paycode.

Needs a running ``paycode serve`` in demo mode (``scripts/sdk-compat`` starts one):

- ``PAYCODE_DATA_DIR``: its data directory, holding ``demo.json``;
- ``PAYCODE_BIN``: the ``paycode`` binary, used as the customer's phone to show a payment code;
- ``SDK_COMPAT_CA`` (optional): the CA to trust when the acquirer serves HTTPS.

The SDK is used as shipped, except for the one connection-factory patch described in
:mod:`sdk_transport`. Every SDK call is also watched by :class:`sdk_transport.VerifySpy` to prove
that the SDK checked each response's signature and that the check passed.
"""

import datetime
import json
import os
import re
import subprocess
import threading
import unittest
import uuid

from com.alipay.ams.api.default_alipay_client import DefaultAlipayClient
from com.alipay.ams.api.exception.exception import AlipayApiException
from com.alipay.ams.api.model.amount import Amount
from com.alipay.ams.api.model.env import Env
from com.alipay.ams.api.model.merchant import Merchant
from com.alipay.ams.api.model.order import Order
from com.alipay.ams.api.model.result_status_type import ResultStatusType
from com.alipay.ams.api.model.store import Store
from com.alipay.ams.api.model.transaction_status_type import TransactionStatusType
from com.alipay.ams.api.model.transaction_type import TransactionType
from com.alipay.ams.api.request.notify.alipay_pay_result_notify import AlipayPayResultNotify
from com.alipay.ams.api.request.notify.alipay_refund_notify import AlipayRefundNotify
from com.alipay.ams.api.request.pay.alipay_inquiry_refund_request import AlipayInquiryRefundRequest
from com.alipay.ams.api.request.pay.alipay_pay_cancel_request import AlipayPayCancelRequest
from com.alipay.ams.api.request.pay.alipay_pay_query_request import AlipayPayQueryRequest
from com.alipay.ams.api.request.pay.alipay_refund_request import AlipayRefundRequest
from com.alipay.ams.api.request.pay.user_presented_code_payment_request import (
    UserPresentedCodePaymentRequest,
)
from com.alipay.ams.api.response.pay.alipay_inquiry_refund_response import (
    AlipayInquiryRefundResponse,
)
from com.alipay.ams.api.response.pay.alipay_pay_cancel_response import AlipayPayCancelResponse
from com.alipay.ams.api.response.pay.alipay_pay_query_response import AlipayPayQueryResponse
from com.alipay.ams.api.response.pay.alipay_pay_response import AlipayPayResponse
from com.alipay.ams.api.response.pay.alipay_refund_response import AlipayRefundResponse
from com.alipay.ams.api.tools.webhook_tool import check_signature

import fake_acquirer
import notify_receiver
import sdk_transport

PAID_MINOR = 1000
REFUND_MINOR = 300
CANCELLED_MINOR = 500
NOTIFY_TIMEOUT_S = 30
CODE_COMMAND_TIMEOUT_S = 120

ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def iso_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def masked(code):
    return "*" * max(len(code) - 4, 0) + code[-4:]


def new_id(kind):
    return "sdk-compat-%s-%s" % (kind, uuid.uuid4().hex)


class PaycodeSdkCompat(unittest.TestCase):
    """pay, inquiryPayment, refund, inquiryRefund and cancel through the SDK, each answer's
    signature verified by the SDK, and the notifications checked with the SDK's webhook checker."""

    @classmethod
    def setUpClass(cls):
        data_dir = os.environ.get("PAYCODE_DATA_DIR")
        cls.paycode_bin = os.environ.get("PAYCODE_BIN")
        if not data_dir or not cls.paycode_bin:
            raise RuntimeError("set PAYCODE_DATA_DIR and PAYCODE_BIN (scripts/sdk-compat does)")
        cls.data_dir = data_dir
        with open(os.path.join(data_dir, "demo.json"), encoding="utf-8") as f:
            cls.demo = json.load(f)
        sdk_transport.install(os.environ.get("SDK_COMPAT_CA") or None)
        cls.gateway_url = cls.demo["acquirerUrl"].rstrip("/")
        cls.client = DefaultAlipayClient(
            cls.gateway_url,
            cls.demo["clientId"],
            cls.demo["merchantPrivateKey"],
            cls.demo["acquirerPublicKey"],
        )
        cls.currency = cls.demo["currency"]
        # The API spells it merchantMCC; demo.json may use either spelling.
        cls.mcc = cls.demo.get("merchantMCC") or cls.demo["merchantMcc"]
        everyday = [u for u in cls.demo["users"] if u.get("role") == "everyday"]
        # The shared payment: a user of a wallet in the merchant's currency (alice, SGD).
        cls.user = next((u for u in everyday if u["currency"] == cls.currency), None)
        if cls.user is None:
            raise RuntimeError("demo.json has no everyday user paying in " + cls.currency)
        # The payment to cancel: a user of another wallet when there is one, so that a
        # cross-currency payment (with its quote) goes through the SDK too.
        cls.second_user = next((u for u in everyday if u["wallet"] != cls.user["wallet"]), cls.user)
        cls.receiver = notify_receiver.NotifyReceiver()
        cls.spy = sdk_transport.VerifySpy().__enter__()
        cls.used_codes = set()
        cls.codes_lock = threading.Lock()
        cls.fixture_lock = threading.Lock()
        cls.fixtures = {}

    @classmethod
    def tearDownClass(cls):
        cls.spy.__exit__(None, None, None)
        cls.receiver.close()

    # --- helpers -------------------------------------------------------------------------------

    def execute(self, request):
        """One SDK call; asserts that the SDK verified the answer's signature, and that it
        passed, exactly once."""
        before = self.spy.count()
        body = self.client.execute(request)
        self.assertEqual(self.spy.count(), before + 1, "the SDK did not verify the answer")
        path, client_id, outcome = self.spy.last()
        self.assertIs(outcome, True)
        self.assertEqual(path, request.path)
        self.assertEqual(client_id, self.demo["clientId"], "client-id response header")
        return body

    def assert_result(self, response, body, code="SUCCESS", status=ResultStatusType.S):
        self.assertIsNotNone(response.result, "no result in: " + body)
        self.assertEqual(
            (response.result.result_code, response.result.result_status),
            (code, status),
            "unexpected result in: " + body,
        )

    def assert_amount(self, amount, value_minor, body):
        self.assertIsNotNone(amount, "amount missing in: " + body)
        self.assertEqual(amount.currency, self.currency)
        self.assertEqual(amount.value, str(value_minor), "amount value must be a string")

    def assert_time(self, value, what):
        self.assertIsNotNone(value, what + " missing")
        self.assertRegex(value, ISO_8601, what + " is not ISO-8601")

    def payment_code(self, user):
        """A new payment code from ``user``'s phone, as the app shows one: every display is a
        new code, so none is ever waited for, and a repeat is a failure."""
        run = subprocess.run(
            [self.paycode_bin, "--data-dir", self.data_dir, "wallet", "code", "--user",
             user["name"], "--digits"],
            capture_output=True,
            text=True,
            timeout=CODE_COMMAND_TIMEOUT_S,
        )
        lines = [l.strip() for l in run.stdout.splitlines() if l.strip()]
        if run.returncode != 0 or not lines:
            self.fail("`paycode wallet code` failed (%d): %s" % (run.returncode, run.stderr.strip()))
        code = lines[-1]
        if not re.fullmatch(r"\d{24}", code):
            # Not echoed: whatever it is, it may be most of a payment code.
            self.fail("`wallet code --digits` printed %d characters, not 24 digits" % len(code))
        with type(self).codes_lock:
            if code in self.used_codes:
                self.fail("the phone showed code %s twice" % masked(code))
            self.used_codes.add(code)
        return code

    def pay(self, user, amount_minor, amount_as_number=False):
        request_id = new_id("pay")
        notify_path = "/notify/pay/" + request_id
        value = amount_minor if amount_as_number else str(amount_minor)

        store = Store()
        store.reference_store_id = self.demo["referenceStoreId"]
        store.store_name = self.demo["storeName"]
        store.store_mcc = self.mcc
        merchant = Merchant()
        merchant.reference_merchant_id = self.demo["referenceMerchantId"]
        merchant.merchant_name = self.demo["merchantName"]
        merchant.merchant_mcc = self.mcc
        merchant.store = store
        env = Env()
        env.store_terminal_id = "SDK-POS-1"
        env.store_terminal_request_time = iso_now()
        order = Order()
        order.reference_order_id = new_id("order")
        order.order_description = "SDK compatibility test"
        order.order_amount = Amount(self.currency, value)
        order.merchant = merchant
        order.env = env

        request = UserPresentedCodePaymentRequest(
            request_id,
            order,
            self.currency,
            value,
            self.payment_code(user),
            payment_notify_url=self.receiver.url(notify_path),
        )
        body = self.execute(request)
        return request, notify_path, AlipayPayResponse(body), body

    def shared(self, name, make):
        """A fixture made once, by whichever test needs it first; a failure to make it is kept
        and reported by every test that needs it, without trying again."""
        cls = type(self)
        with cls.fixture_lock:
            if name not in cls.fixtures:
                try:
                    cls.fixtures[name] = make()
                except Exception as e:
                    cls.fixtures[name] = e
            value = cls.fixtures[name]
        if isinstance(value, Exception):
            self.fail("the shared %s failed: %s: %s" % (name, type(value).__name__, value))
        return value

    def paid_payment(self):
        """The shared successful payment."""

        def make():
            request, notify_path, response, body = self.pay(self.user, PAID_MINOR)
            return {
                "request": request,
                "request_id": request.payment_request_id,
                "notify_path": notify_path,
                "response": response,
                "body": body,
            }

        paid = self.shared("payment", make)
        self.assert_result(paid["response"], paid["body"])
        return paid

    def refunded(self):
        """The shared partial refund of :meth:`paid_payment`."""
        paid = self.paid_payment()

        def make():
            refund_request_id = new_id("refund")
            notify_path = "/notify/refund/" + refund_request_id
            request = AlipayRefundRequest()
            request.refund_request_id = refund_request_id
            request.payment_id = paid["response"].payment_id
            request.refund_amount = Amount(self.currency, str(REFUND_MINOR))
            request.refund_reason = "SDK compatibility test"
            request.refund_notify_url = self.receiver.url(notify_path)
            body = self.execute(request)
            return {
                "request_id": refund_request_id,
                "notify_path": notify_path,
                "response": AlipayRefundResponse(body),
                "body": body,
            }

        refund = self.shared("refund", make)
        self.assert_result(refund["response"], refund["body"])
        return refund

    def inquire(self, payment_id=None, payment_request_id=None):
        request = AlipayPayQueryRequest()
        request.payment_id = payment_id
        request.payment_request_id = payment_request_id
        body = self.execute(request)
        return AlipayPayQueryResponse(body), body

    def wait_notification(self, path):
        note = self.receiver.wait_for(path, NOTIFY_TIMEOUT_S)
        self.assertIsNotNone(
            note, "no notification POSTed to %s within %d s" % (path, NOTIFY_TIMEOUT_S)
        )
        return note

    def assert_sdk_accepts_notification(self, note, path):
        for name in ("Client-Id", "Request-Time", "Signature"):
            self.assertTrue(note.header(name), "notification without %s header" % name)
        self.assertEqual(note.header("Client-Id"), self.demo["clientId"])
        ok = check_signature(
            "POST",
            path,
            note.header("Client-Id"),
            note.header("Request-Time"),
            note.body.decode("utf-8"),
            note.header("Signature"),
            self.demo["acquirerPublicKey"],
        )
        self.assertTrue(ok, "the SDK's webhook checker rejected the notification signature")
        # And the checker is not a rubber stamp: the same headers over an altered body fail.
        altered = note.body.decode("utf-8").replace('"S"', '"F"', 1)
        self.assertNotEqual(altered, note.body.decode("utf-8"))
        try:
            accepted = check_signature(
                "POST", path, note.header("Client-Id"), note.header("Request-Time"), altered,
                note.header("Signature"), self.demo["acquirerPublicKey"],
            )
        except Exception:  # the SDK's rsa.verify raises on a mismatch
            accepted = False
        self.assertFalse(accepted, "the SDK's webhook checker accepted an altered body")

    # --- the merchant's story ----------------------------------------------------------------

    def test_pay_succeeds(self):
        paid = self.paid_payment()
        response, body = paid["response"], paid["body"]
        self.assertEqual(response.payment_request_id, paid["request_id"])
        self.assertTrue(response.payment_id, "paymentId missing in: " + body)
        self.assert_amount(response.payment_amount, PAID_MINOR, body)
        self.assert_time(response.payment_create_time, "paymentCreateTime")
        self.assert_time(response.payment_time, "paymentTime")
        self.assertIsNotNone(response.psp_customer_info, "pspCustomerInfo missing in: " + body)
        self.assertTrue(response.psp_customer_info.psp_name)
        self.assertIsNotNone(response.actual_payment_amount, "actualPaymentAmount missing")

    def test_the_same_customer_pays_twice_in_a_row_without_waiting(self):
        first = self.pay(self.user, 120)
        second = self.pay(self.user, 130)
        for (_, _, response, body), minor in ((first, 120), (second, 130)):
            self.assert_result(response, body)
            self.assert_amount(response.payment_amount, minor, body)
        self.assertNotEqual(first[2].payment_id, second[2].payment_id)

    def test_pay_notification_passes_the_sdk_webhook_check(self):
        paid = self.paid_payment()
        note = self.wait_notification(paid["notify_path"])
        self.assert_sdk_accepts_notification(note, paid["notify_path"])
        notify = AlipayPayResultNotify(note.body.decode("utf-8"))
        self.assertEqual(notify.notify_type, "PAYMENT_RESULT")
        self.assertEqual(notify.result.result_code, "SUCCESS")
        self.assertEqual(notify.result.result_status, ResultStatusType.S)
        self.assertEqual(notify.payment_id, paid["response"].payment_id)
        self.assertEqual(notify.payment_request_id, paid["request_id"])
        self.assertEqual(
            notify.payment_amount, {"currency": self.currency, "value": str(PAID_MINOR)}
        )

    def test_inquiry_payment_by_payment_id_and_by_request_id(self):
        paid = self.paid_payment()
        payment_id = paid["response"].payment_id
        for by_id in (True, False):
            with self.subTest(by_payment_id=by_id):
                if by_id:
                    response, body = self.inquire(payment_id=payment_id)
                else:
                    response, body = self.inquire(payment_request_id=paid["request_id"])
                self.assert_result(response, body)
                self.assertEqual(response.payment_status, TransactionStatusType.SUCCESS, body)
                self.assertEqual(response.payment_id, payment_id)
                self.assertEqual(response.payment_request_id, paid["request_id"])
                self.assert_amount(response.payment_amount, PAID_MINOR, body)
                self.assert_time(response.payment_time, "paymentTime")

    def test_sdk_calls_the_prefix_its_client_id_implies(self):
        # The SDK sends every call of a client id starting with SANDBOX_ to /ams/sandbox/api/…
        # and every other to /ams/api/…; paycode must serve whichever the demo client implies.
        paid = self.paid_payment()
        response, body = self.inquire(payment_id=paid["response"].payment_id)
        sandbox = self.demo["clientId"].startswith("SANDBOX_")
        prefix = "/ams/sandbox/api/" if sandbox else "/ams/api/"
        self.assertEqual(self.spy.last()[0], prefix + "v1/payments/inquiryPayment")
        self.assert_result(response, body)
        self.assertEqual(response.payment_status, TransactionStatusType.SUCCESS, body)

    def test_partial_refund_succeeds(self):
        refund = self.refunded()
        response, body = refund["response"], refund["body"]
        self.assertTrue(response.refund_id, "refundId missing in: " + body)
        self.assertEqual(response.refund_request_id, refund["request_id"])
        self.assertEqual(response.payment_id, self.paid_payment()["response"].payment_id)
        self.assert_amount(response.refund_amount, REFUND_MINOR, body)
        self.assert_time(response.refund_time, "refundTime")

    def test_inquiry_refund_by_request_id_and_by_refund_id(self):
        refund = self.refunded()
        for by_request_id in (True, False):
            with self.subTest(by_refund_request_id=by_request_id):
                request = AlipayInquiryRefundRequest()
                if by_request_id:
                    request.refund_request_id = refund["request_id"]
                else:
                    request.refund_id = refund["response"].refund_id
                body = self.execute(request)
                response = AlipayInquiryRefundResponse(body)
                self.assert_result(response, body)
                self.assertEqual(response.refund_status, TransactionStatusType.SUCCESS, body)
                self.assertEqual(response.refund_id, refund["response"].refund_id)
                self.assertEqual(response.refund_request_id, refund["request_id"])
                self.assert_amount(response.refund_amount, REFUND_MINOR, body)

    def test_refund_notification_passes_the_sdk_webhook_check(self):
        refund = self.refunded()
        note = self.wait_notification(refund["notify_path"])
        self.assert_sdk_accepts_notification(note, refund["notify_path"])
        notify = AlipayRefundNotify(note.body.decode("utf-8"))
        self.assertEqual(notify.notify_type, "REFUND_RESULT")
        self.assertEqual(notify.result.result_status, ResultStatusType.S)
        self.assertEqual(notify.refund_id, refund["response"].refund_id)
        self.assertEqual(notify.refund_request_id, refund["request_id"])

    def test_inquiry_payment_lists_the_refund(self):
        refund = self.refunded()
        response, body = self.inquire(payment_id=self.paid_payment()["response"].payment_id)
        self.assert_result(response, body)
        refunds = [
            t for t in (response.transactions or []) if t.transaction_type == TransactionType.REFUND
        ]
        self.assertEqual(len(refunds), 1, "transactions[] should list the refund: " + body)
        self.assertEqual(refunds[0].transaction_status, TransactionStatusType.SUCCESS)
        self.assertEqual(refunds[0].transaction_id, refund["response"].refund_id)
        self.assertEqual(refunds[0].transaction_request_id, refund["request_id"])
        self.assert_amount(refunds[0].transaction_amount, REFUND_MINOR, body)

    def test_cancel_a_second_payment(self):
        # The amount goes as a JSON number here, as the SDK's own examples send it.
        user = self.second_user
        pay_request, _, paid, body = self.pay(user, CANCELLED_MINOR, amount_as_number=True)
        self.assert_result(paid, body)
        self.assert_amount(paid.payment_amount, CANCELLED_MINOR, body)
        self.assertEqual(paid.actual_payment_amount.currency, user["currency"], body)
        if user["currency"] != self.currency:
            self.assertIsNotNone(paid.payment_quote, "paymentQuote missing in: " + body)
            self.assertEqual(
                paid.payment_quote.quote_currency_pair, self.currency + "/" + user["currency"]
            )
            self.assertTrue(paid.payment_quote.quote_price, body)
        request = AlipayPayCancelRequest()
        request.payment_id = paid.payment_id
        body = self.execute(request)
        cancel = AlipayPayCancelResponse(body)
        self.assert_result(cancel, body)
        self.assertEqual(cancel.payment_id, paid.payment_id)
        self.assert_time(cancel.cancel_time, "cancelTime")
        response, body = self.inquire(payment_request_id=pay_request.payment_request_id)
        self.assert_result(response, body)
        self.assertEqual(response.payment_status, TransactionStatusType.CANCELLED, body)

    def test_repeated_pay_returns_the_first_outcome(self):
        # A merchant that timed out resends the very same request: no second charge.
        paid = self.paid_payment()
        body = self.execute(paid["request"])
        again = AlipayPayResponse(body)
        self.assert_result(again, body)
        self.assertEqual(again.payment_id, paid["response"].payment_id)
        self.assert_amount(again.payment_amount, PAID_MINOR, body)

    def test_unknown_payment_is_a_signed_business_failure(self):
        response, body = self.inquire(payment_id="no-such-payment-" + uuid.uuid4().hex)
        self.assert_result(response, body, code="ORDER_NOT_EXIST", status=ResultStatusType.F)

    # --- the SDK really verifies -------------------------------------------------------------

    def test_tampered_response_is_rejected_by_the_sdk(self):
        payment_id = self.paid_payment()["response"].payment_id

        def tamper(headers, body):
            altered = body.replace(b'"SUCCESS"', b'"FAIL"', 1)
            self.assertNotEqual(altered, body)
            return headers, altered

        request = AlipayPayQueryRequest()
        request.payment_id = payment_id
        with sdk_transport.tampered_responses(tamper):
            with self.assertRaises(AlipayApiException) as caught:
                self.client.execute(request)
        self.assertIn("verify", str(caught.exception))

    def test_tampered_signature_header_is_rejected_by_the_sdk(self):
        def tamper(headers, body):
            out = []
            for name, value in headers:
                if name == "signature":
                    head, sig = value.split("signature=", 1)
                    value = head + "signature=" + ("B" if sig[0] == "A" else "A") + sig[1:]
                out.append((name, value))
            return out, body

        request = AlipayPayQueryRequest()
        request.payment_id = self.paid_payment()["response"].payment_id
        with sdk_transport.tampered_responses(tamper):
            with self.assertRaises(AlipayApiException):
                self.client.execute(request)

    def test_answer_checked_with_another_acquirer_key_is_rejected(self):
        _, _, other_public = fake_acquirer.new_rsa_key()
        client = DefaultAlipayClient(
            self.gateway_url, self.demo["clientId"], self.demo["merchantPrivateKey"], other_public
        )
        request = AlipayPayQueryRequest()
        request.payment_id = self.paid_payment()["response"].payment_id
        with self.assertRaises(AlipayApiException):
            client.execute(request)


if __name__ == "__main__":
    unittest.main()
