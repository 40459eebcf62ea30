//! Calls from the acquirer to wallets over the MPP protocol (`paycode_proto::mpp`), signed with
//! our key and verified with the wallet's. Each call is timed into the `wallet_call_seconds`
//! histogram by wallet and operation.

use crate::registry::Wallet;
use paycode_http::{CallError, SignedClient};
use paycode_proto::mpp;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct WalletClient {
    pay_client: SignedClient,
    call_client: SignedClient,
}

impl WalletClient {
    pub fn new(
        client_id: &str,
        signer: paycode_http::Signer,
        pay_timeout: Duration,
        call_timeout: Duration,
        now_ms: paycode_http::NowMs,
    ) -> WalletClient {
        WalletClient {
            pay_client: SignedClient::new(client_id, signer.clone(), None, pay_timeout)
                .with_clock(now_ms.clone()),
            call_client: SignedClient::new(client_id, signer, None, call_timeout)
                .with_clock(now_ms),
        }
    }

    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        client: &SignedClient,
        wallet: &Wallet,
        op: &'static str,
        path: &str,
        req: &Req,
    ) -> Result<Resp, CallError> {
        let started = Instant::now();
        let url = format!("{}{}", wallet.base_url, path);
        let result = client
            .with_peer_key(wallet.public_key.clone())
            .post(&url, req)
            .await;
        let outcome = match &result {
            Ok(_) => "answered",
            Err(CallError::NotDelivered(_)) => "not_delivered",
            Err(CallError::Unknown(_)) => "unknown",
        };
        metrics::histogram!("paycode_wallet_call_seconds", "wallet" => wallet.name.clone(), "op" => op, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }

    pub async fn pay(
        &self,
        wallet: &Wallet,
        req: &mpp::PayRequest,
    ) -> Result<mpp::PayResponse, CallError> {
        Self::call(&self.pay_client, wallet, "pay", mpp::PAY_PATH, req).await
    }

    pub async fn inquiry(
        &self,
        wallet: &Wallet,
        payment_id: &str,
    ) -> Result<mpp::InquiryResponse, CallError> {
        let req = mpp::PaymentRef {
            payment_request_id: payment_id.to_string(),
        };
        Self::call(
            &self.call_client,
            wallet,
            "inquiry",
            mpp::INQUIRY_PATH,
            &req,
        )
        .await
    }

    pub async fn cancel(
        &self,
        wallet: &Wallet,
        payment_id: &str,
    ) -> Result<mpp::CancelResponse, CallError> {
        let req = mpp::PaymentRef {
            payment_request_id: payment_id.to_string(),
        };
        Self::call(&self.call_client, wallet, "cancel", mpp::CANCEL_PATH, &req).await
    }

    pub async fn refund(
        &self,
        wallet: &Wallet,
        req: &mpp::RefundRequest,
    ) -> Result<mpp::RefundResponse, CallError> {
        Self::call(&self.call_client, wallet, "refund", mpp::REFUND_PATH, req).await
    }
}
