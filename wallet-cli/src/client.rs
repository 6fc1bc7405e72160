//! [`Client`]: the wallet's view of a cluster. It holds the user's keys (they never leave the
//! process: only signed transactions are sent), talks to replicas over pinned TLS, and accepts
//! an answer only when f+1 distinct genesis replicas signed it. A replica that fails, times out
//! or answers something unprovable is recorded and the next one is asked; when none can be
//! verified the call fails, it never returns an unverified success.

use crate::coins::{self, Selection};
use crate::config::ClusterConfig;
use crate::error::{ClientError, ProblemKind, ReplicaProblem};
use crate::net::{Body, Endpoint, NetError, Reply, Transport};
use crate::wire::{
    AttestedRead, BlockList, BlockView, ClusterStatus, ErrorEnvelope, ReceiptBundle, SubmitOutcome,
    TxStatus,
};
use coffer_ledger::attest::{
    self, HistoryEntry, ReadQuery, ReadResult, ReceiptStatement, ReplicaSet, Signed, UtxoEntry,
};
use coffer_ledger::hash::Hex;
use coffer_ledger::{
    Address, Amount, ChainId, Keypair, Mint, OutPoint, PublicKey, SignedTransaction, Transaction,
    Transfer, TxOut, Txid,
};
use hyper::{Method, StatusCode};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Largest page asked for (the gateway's maximum).
pub const MAX_PAGE: u32 = 1000;
/// Most UTXO pages fetched for coin selection: 100 000 outputs is far above what one
/// transaction can spend, and bounds the work a replica can make the client do.
pub const MAX_UTXO_PAGES: usize = 100;
/// Most blocks one range request may ask for (the gateway's maximum).
pub const MAX_BLOCK_RANGE: u64 = 100;
/// How often a pending transaction's status is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A value that f+1 replicas signed, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verified<T> {
    /// The value.
    pub value: T,
    /// Height of the state it describes.
    pub height: u64,
    /// State commitment at that height, hex.
    pub commitment: String,
    /// Replica whose gateway answered.
    pub answered_by: String,
    /// Replicas whose signatures verified, by name.
    pub signers: Vec<String>,
    /// Replicas that failed or disagreed before (or within) the verified answer.
    pub problems: Vec<ReplicaProblem>,
}

/// A balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// Sum of the address's unspent outputs.
    pub amount: Amount,
    /// How many there are.
    pub utxo_count: u64,
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    /// The entries.
    pub entries: Vec<T>,
    /// Cursor of the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// A transaction the cluster committed, proven by f+1 signed receipts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Committed {
    /// Its id.
    pub txid: Txid,
    /// `ok` or the reject code (only `ok` comes back from [`Client::submit`]).
    pub code: String,
    /// Height of its block.
    pub height: u64,
    /// State commitment after that block, hex.
    pub commitment: String,
    /// It had been committed before this submission (a safe resubmission).
    pub replayed: bool,
    /// Replica whose gateway answered.
    pub answered_by: String,
    /// Replicas whose receipts verified, by name.
    pub signers: Vec<String>,
    /// Replicas that failed or disagreed on the way.
    pub problems: Vec<ReplicaProblem>,
}

/// What [`Client::transaction`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxInfo {
    /// Committed, with f+1 signed receipts (the code may be a rejection).
    Committed(Committed),
    /// Not committed yet according to `claimed_by` (an unsigned claim).
    Pending {
        /// Replicas that said so.
        claimed_by: Vec<String>,
    },
}

/// Blocks that f+1 replicas listed identically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgreedBlocks {
    /// The blocks, ascending.
    pub blocks: Vec<BlockView>,
    /// Replicas that gave exactly this list.
    pub agreed_by: Vec<String>,
    /// Replicas that failed or gave another list.
    pub problems: Vec<ReplicaProblem>,
}

/// One replica's status answer, or why there was none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaReport {
    /// Name from the cluster config.
    pub name: String,
    /// Base URL.
    pub url: String,
    /// Its status, if it answered.
    pub status: Option<ClusterStatus>,
    /// Why it did not, if it did not.
    pub error: Option<String>,
}

/// The client. Cheap to share by reference; every method takes `&self`.
pub struct Client {
    config: ClusterConfig,
    chain_id: ChainId,
    set: ReplicaSet,
    transport: Transport,
    endpoints: Vec<Endpoint>,
    keys: BTreeMap<String, Keypair>,
    /// Highest height this client saw verified (committed or read): later reads must not go
    /// back in time.
    min_height: AtomicU64,
    /// Replica asked first. Index 0 (the configured order) unless [`Client::spread_from`]
    /// made the client sticky: then the last replica that answered it.
    preferred: AtomicUsize,
    /// Whether `preferred` follows the last replica that answered.
    sticky: bool,
    /// Whether every receipt signature is checked (and misbehaving replicas reported), or only
    /// as many as the proof needs (see [`Client::check_only_quorum`]).
    audit: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("chain_id", &self.chain_id)
            .field("replicas", &self.endpoints.len())
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Client {
    /// A client for the cluster described by `config` (validated again here).
    pub fn new(config: ClusterConfig) -> Result<Client, ClientError> {
        config.validate()?;
        let chain_id = ChainId::new(config.chain_id.clone())
            .map_err(|e| ClientError::Usage(format!("chain id: {e}")))?;
        let set = config.replica_set()?;
        let pem = config.ca_cert_pem.clone().unwrap_or_default();
        let transport = Transport::new(pem.as_bytes())
            .map_err(|e| ClientError::Usage(format!("cluster config: {e}")))?;
        let endpoints = config
            .replicas
            .iter()
            .map(|r| Endpoint::parse(&r.url))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Usage(format!("cluster config: {e}")))?;
        Ok(Client {
            config,
            chain_id,
            set,
            transport,
            endpoints,
            keys: BTreeMap::new(),
            min_height: AtomicU64::new(0),
            preferred: AtomicUsize::new(0),
            sticky: false,
            audit: true,
        })
    }

    /// The height below which read answers are refused as stale: the highest height this
    /// client has seen verified (a commit or a read), or one set with
    /// [`Client::observe_height`] (e.g. remembered from an earlier run).
    pub fn min_height(&self) -> u64 {
        self.min_height.load(Ordering::Relaxed)
    }

    /// Raises [`Client::min_height`] to `height` if it is higher.
    pub fn observe_height(&self, height: u64) {
        self.min_height.fetch_max(height, Ordering::Relaxed);
    }

    /// Every replica index once, starting at the preferred one.
    fn order(&self) -> impl Iterator<Item = usize> + use<> {
        let n = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed);
        (0..n).map(move |k| (start + k) % n)
    }

    /// Remembers `index` as the replica to ask first next time (sticky clients only).
    fn prefer(&self, index: usize) {
        if self.sticky {
            self.preferred.store(index, Ordering::Relaxed);
        }
    }

    /// For many concurrent clients (the benchmark): ask replica `first` (modulo n) first
    /// instead of following the configured order, and from then on the replica that last
    /// answered. Clients started at different replicas spread the load over the gateways, and
    /// a client that found a replica dead or hung waits for it once, not on every request.
    pub fn spread_from(&mut self, first: usize) {
        self.sticky = true;
        self.preferred
            .store(first % self.endpoints.len().max(1), Ordering::Relaxed);
    }

    /// For throughput (the benchmark): when a gateway returns receipts that all agree, check
    /// signatures only until f+1 are valid ([`attest::accept_quorum`]) instead of all of them.
    /// The proof is the same (f+1 distinct replicas signed this receipt); what is lost is the
    /// report of a faulty replica whose surplus signature was never checked. Any disagreement
    /// still gets the full check.
    pub fn check_only_quorum(&mut self) {
        self.audit = false;
    }

    /// Shares `other`'s memory of verified block signatures: replicas sign the receipts of a
    /// block once (a Merkle root) and a verified root is not verified again, so clients in one
    /// process that share it check each replica's block signature once between them, and each
    /// further receipt of that block by hashing its inclusion proof. Ignored for another
    /// cluster's client.
    pub fn share_verified_blocks(&mut self, other: &Client) {
        if self.set == other.set {
            self.set = other.set.clone();
        }
    }

    /// The index of the replica this client asks first.
    pub fn preferred_replica(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }

    /// The cluster configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The chain id transactions are built for.
    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// Holds `keypair` under `name` for signing. Keys stay in this process.
    pub fn add_key(&mut self, name: impl Into<String>, keypair: Keypair) {
        self.keys.insert(name.into(), keypair);
    }

    /// The key named `name`.
    fn key(&self, name: &str) -> Result<&Keypair, ClientError> {
        self.keys
            .get(name)
            .ok_or_else(|| ClientError::Usage(format!("no key named {name:?} loaded")))
    }

    fn name(&self, index: usize) -> String {
        self.config
            .replicas
            .get(index)
            .map_or_else(|| format!("#{index}"), |r| r.name.clone())
    }

    fn name_of_key(&self, key: &[u8; 32]) -> String {
        let hex = Hex::new(key);
        self.config
            .replicas
            .iter()
            .find(|r| r.public_key.eq_ignore_ascii_case(hex.as_str()))
            .map_or_else(|| hex.to_string(), |r| r.name.clone())
    }

    fn problem(
        &self,
        index: usize,
        kind: ProblemKind,
        detail: impl Into<String>,
    ) -> ReplicaProblem {
        ReplicaProblem {
            replica: self.name(index),
            kind,
            detail: detail.into(),
        }
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    /// One request to replica `index`; transport failures and overload statuses are recorded in
    /// `problems` (and give `None`), any other answer is returned for the caller to judge.
    async fn ask(
        &self,
        index: usize,
        method: Method,
        path: &str,
        body: Option<Body>,
        timeout: Duration,
        problems: &mut Vec<ReplicaProblem>,
    ) -> Option<Reply> {
        let Some(endpoint) = self.endpoints.get(index) else {
            problems.push(self.problem(index, ProblemKind::Unreachable, "no such replica"));
            return None;
        };
        let problem = match self
            .transport
            .request(endpoint, method, path, body, timeout)
            .await
        {
            Err(e @ NetError::TooLarge { .. }) => {
                self.problem(index, ProblemKind::Unverified, e.to_string())
            }
            Err(e) => self.problem(index, ProblemKind::Unreachable, e.to_string()),
            Ok(reply)
                if reply.status == StatusCode::TOO_MANY_REQUESTS
                    || reply.status.is_server_error() =>
            {
                let detail = error_text(&reply);
                self.problem(index, ProblemKind::Busy, detail)
            }
            Ok(reply) => {
                // Any HTTP answer that is not an overload means the replica is alive; whether
                // its content is provable is judged by the caller, and a lying replica stays
                // cheap to skip (it answers fast).
                self.prefer(index);
                return Some(reply);
            }
        };
        problems.push(problem);
        None
    }

    /// Asks replica `index` to GET `path` ([`ask`](Self::ask)) within the configured request
    /// timeout.
    async fn get(
        &self,
        index: usize,
        path: &str,
        problems: &mut Vec<ReplicaProblem>,
    ) -> Option<Reply> {
        let timeout = self.request_timeout();
        self.ask(index, Method::GET, path, None, timeout, problems)
            .await
    }

    /// The error to return once every replica was tried without a verified answer.
    fn conclude(&self, what: &str, problems: Vec<ReplicaProblem>) -> ClientError {
        let unverified = problems
            .iter()
            .any(|p| matches!(p.kind, ProblemKind::Unverified | ProblemKind::Refused));
        if unverified {
            ClientError::Unverifiable {
                what: what.to_owned(),
                threshold: self.config.threshold(),
                problems,
            }
        } else {
            ClientError::Unavailable {
                what: what.to_owned(),
                problems,
            }
        }
    }

    // ---- reads -------------------------------------------------------------------------

    /// Asks replicas in turn for `query` until one answer carries f+1 valid signatures over
    /// exactly this query and result.
    ///
    /// Reads are monotonic: an answer about a height below [`Client::min_height`] (a replica
    /// that has not yet executed a block this client saw committed) is skipped, and the
    /// replicas are asked again for up to the request timeout.
    pub async fn read(&self, query: &ReadQuery) -> Result<Verified<ReadResult>, ClientError> {
        let path = read_path(query);
        let mut problems = Vec::new();
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        loop {
            let mut stale = false;
            if let Some(result) = self
                .read_round(query, &path, &mut problems, &mut stale)
                .await
            {
                return result;
            }
            if !stale || tokio::time::Instant::now() + POLL_INTERVAL >= deadline {
                return Err(self.conclude(&format!("read {path}"), problems));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Every replica once; `None` when none gave a usable answer.
    async fn read_round(
        &self,
        query: &ReadQuery,
        path: &str,
        problems: &mut Vec<ReplicaProblem>,
        stale: &mut bool,
    ) -> Option<Result<Verified<ReadResult>, ClientError>> {
        let mut refusals: BTreeMap<String, (usize, String)> = BTreeMap::new();
        for index in self.order() {
            let Some(reply) = self.get(index, path, problems).await else {
                continue;
            };
            if reply.status != StatusCode::OK {
                let (code, message) = error_code(&reply);
                let count = {
                    let entry = refusals.entry(code.clone()).or_insert((0, message.clone()));
                    entry.0 += 1;
                    entry.0
                };
                problems.push(self.problem(
                    index,
                    ProblemKind::Refused,
                    format!("{}: {code}: {message}", reply.status),
                ));
                if count >= self.config.threshold() && reply.status.is_client_error() {
                    return Some(Err(ClientError::Usage(format!(
                        "{count} replicas refused {path}: {code}: {message}"
                    ))));
                }
                continue;
            }
            let answer: AttestedRead = match serde_json::from_slice(&reply.body) {
                Ok(a) => a,
                Err(e) => {
                    problems.push(self.problem(
                        index,
                        ProblemKind::Unverified,
                        format!("malformed answer: {e}"),
                    ));
                    continue;
                }
            };
            match attest::verify_read(
                &answer.attestations,
                &self.set,
                self.chain_id.as_str(),
                self.config.threshold(),
                query,
                &answer.result,
            ) {
                Ok(v) if v.statement.height < self.min_height() => {
                    *stale = true;
                    problems.push(self.problem(
                        index,
                        ProblemKind::Stale,
                        format!(
                            "answered at height {}, below height {} already seen",
                            v.statement.height,
                            self.min_height()
                        ),
                    ));
                }
                Ok(v) => {
                    self.observe_height(v.statement.height);
                    for d in &v.discarded {
                        problems.push(ReplicaProblem {
                            replica: self.name_of_key(&d.replica),
                            kind: ProblemKind::Unverified,
                            detail: format!(
                                "its signature in {}'s answer did not count: {}",
                                self.name(index),
                                discard_text(d.reason)
                            ),
                        });
                    }
                    return Some(Ok(Verified {
                        value: answer.result,
                        height: v.statement.height,
                        commitment: Hex::new(&v.statement.commitment).to_string(),
                        answered_by: self.name(index),
                        signers: v.signers.iter().map(|k| self.name_of_key(k)).collect(),
                        problems: std::mem::take(problems),
                    }));
                }
                Err(e) => problems.push(self.problem(
                    index,
                    ProblemKind::Unverified,
                    format!("answer not proven: {e}"),
                )),
            }
        }
        None
    }

    /// Reads `query` and takes the typed value out of its verified result; `value_of` answers
    /// `None` for a result of another kind.
    async fn read_as<T>(
        &self,
        query: &ReadQuery,
        value_of: impl FnOnce(&ReadResult) -> Option<T>,
    ) -> Result<Verified<T>, ClientError> {
        let v = self.read(query).await?;
        match value_of(&v.value) {
            Some(value) => Ok(map(v, value)),
            None => Err(kind_mismatch(&v)),
        }
    }

    /// Verified balance of `address`.
    pub async fn balance(&self, address: &Address) -> Result<Verified<Balance>, ClientError> {
        let query = ReadQuery::Balance {
            address: address.to_string(),
        };
        self.read_as(&query, |result| match result {
            ReadResult::Balance { amount, utxo_count } => Some(Balance {
                amount: Amount(*amount),
                utxo_count: *utxo_count,
            }),
            _ => None,
        })
        .await
    }

    /// One verified page of `address`'s unspent outputs.
    pub async fn utxos_page(
        &self,
        address: &Address,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Verified<Page<UtxoEntry>>, ClientError> {
        let query = ReadQuery::Utxos {
            address: address.to_string(),
            cursor: cursor.map(str::to_owned),
            limit: limit.clamp(1, MAX_PAGE),
        };
        self.read_as(&query, |result| match result {
            ReadResult::Utxos {
                entries,
                next_cursor,
            } => Some(page(entries, next_cursor.as_deref())),
            _ => None,
        })
        .await
    }

    /// Every unspent output of `address`, each page verified (at most [`MAX_UTXO_PAGES`]).
    pub async fn all_utxos(
        &self,
        address: &Address,
    ) -> Result<Vec<(OutPoint, Amount)>, ClientError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_UTXO_PAGES {
            let page = self
                .utxos_page(address, cursor.as_deref(), MAX_PAGE)
                .await?
                .value;
            out.extend(page.entries.iter().map(|e| {
                (
                    OutPoint {
                        txid: Txid(e.txid),
                        vout: e.vout,
                    },
                    Amount(e.amount),
                )
            }));
            match page.next_cursor {
                None => return Ok(out),
                // A cursor that does not move would loop for ever.
                Some(c) if Some(&c) == cursor.as_ref() => return Ok(out),
                Some(c) => cursor = Some(c),
            }
        }
        Ok(out)
    }

    /// One verified page of `address`'s history, newest first.
    pub async fn history_page(
        &self,
        address: &Address,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Verified<Page<HistoryEntry>>, ClientError> {
        let query = ReadQuery::History {
            address: address.to_string(),
            cursor: cursor.map(str::to_owned),
            limit: limit.clamp(1, MAX_PAGE),
        };
        self.read_as(&query, |result| match result {
            ReadResult::History {
                entries,
                next_cursor,
            } => Some(page(entries, next_cursor.as_deref())),
            _ => None,
        })
        .await
    }

    /// Verified total supply.
    pub async fn supply(&self) -> Result<Verified<Amount>, ClientError> {
        self.read_as(&ReadQuery::Supply, |result| match result {
            ReadResult::Supply { total } => Some(Amount(*total)),
            _ => None,
        })
        .await
    }

    // ---- building and signing ------------------------------------------------------------

    /// Builds an unsigned transfer of `amount` from `from` to `to`, choosing inputs among its
    /// verified UTXOs ([`coins::select`]) and paying the change back to `from`'s address.
    pub async fn build_transfer(
        &self,
        from: &PublicKey,
        to: &Address,
        amount: Amount,
    ) -> Result<Transaction, ClientError> {
        let utxos = self.all_utxos(&from.address()).await?;
        let selection = coins::select(&utxos, amount, usize::from(self.config.max_inputs))?;
        Ok(self.transfer_from_selection(from, to, amount, &selection))
    }

    /// The transfer for a selection (pure).
    pub fn transfer_from_selection(
        &self,
        from: &PublicKey,
        to: &Address,
        amount: Amount,
        selection: &Selection,
    ) -> Transaction {
        let mut outputs = vec![TxOut::to_address(amount, *to)];
        if selection.change > Amount::ZERO {
            outputs.push(TxOut::to_address(selection.change, from.address()));
        }
        Transaction::Transfer(Transfer {
            chain_id: self.chain_id.clone(),
            signer: *from,
            inputs: selection.inputs.clone(),
            outputs,
        })
    }

    /// An unsigned mint of `amount` to `to` by `issuer`, unique by `nonce`.
    pub fn build_mint(
        &self,
        issuer: &PublicKey,
        to: &Address,
        amount: Amount,
        nonce: u64,
    ) -> Transaction {
        Transaction::Mint(Mint {
            chain_id: self.chain_id.clone(),
            issuer: *issuer,
            nonce,
            outputs: vec![TxOut::to_address(amount, *to)],
        })
    }

    /// Signs `tx` with the key named `key_name`, which must be the transaction's signer and
    /// the transaction must be for this cluster's chain.
    pub fn sign(&self, key_name: &str, tx: Transaction) -> Result<SignedTransaction, ClientError> {
        let key = self.key(key_name)?;
        sign_with(key, &self.chain_id, tx)
    }

    // ---- writes --------------------------------------------------------------------------

    fn verify_receipts(
        &self,
        receipts: &[Signed<ReceiptStatement>],
        txid: Txid,
    ) -> Result<(ReceiptStatement, Vec<String>), String> {
        let check = if self.audit {
            attest::verify_quorum
        } else {
            attest::accept_quorum
        };
        let v = check(
            receipts,
            &self.set,
            self.chain_id.as_str(),
            self.config.threshold(),
        )
        .map_err(|e| format!("receipts not proven: {e}"))?;
        if v.statement.txid != txid.0 {
            return Err(format!(
                "receipts are for transaction {}, not {txid}",
                Hex::new(&v.statement.txid)
            ));
        }
        let signers = v.signers.iter().map(|k| self.name_of_key(k)).collect();
        Ok((v.statement, signers))
    }

    fn committed(
        &self,
        statement: ReceiptStatement,
        signers: Vec<String>,
        replayed: bool,
        index: usize,
        problems: Vec<ReplicaProblem>,
    ) -> Committed {
        self.observe_height(statement.height);
        Committed {
            txid: Txid(statement.txid),
            code: statement.code,
            height: statement.height,
            commitment: Hex::new(&statement.commitment).to_string(),
            replayed,
            answered_by: self.name(index),
            signers,
            problems,
        }
    }

    /// Submits `tx` and waits for f+1 signed receipts. Tries replicas in turn: one that fails,
    /// times out or answers unprovable receipts is skipped. Submitting the same transaction
    /// again is safe (same txid: the ledger never applies it twice). A rejection is returned
    /// as [`ClientError::Rejected`] only when proven: receipts signed by f+1 replicas, or the
    /// same refusal from f+1 replicas before ordering.
    pub async fn submit(&self, tx: &SignedTransaction) -> Result<Committed, ClientError> {
        let txid = tx.txid();
        let body = Body::transaction(tx);
        let timeout = Duration::from_millis(self.config.submit_timeout_ms);
        let mut problems = Vec::new();
        let mut refusals: BTreeMap<String, (BTreeSet<usize>, String)> = BTreeMap::new();
        let mut pending = false;
        for index in self.order() {
            let Some(mut reply) = self
                .ask(
                    index,
                    Method::POST,
                    "/v1/transactions",
                    Some(body.clone()),
                    timeout,
                    &mut problems,
                )
                .await
            else {
                continue;
            };
            if reply.status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                // A replica from before binary submissions: the same transaction as JSON.
                let json =
                    Body::json(serde_json::to_vec(tx).map_err(|e| {
                        ClientError::Usage(format!("cannot encode transaction: {e}"))
                    })?);
                reply = match self
                    .ask(
                        index,
                        Method::POST,
                        "/v1/transactions",
                        Some(json),
                        timeout,
                        &mut problems,
                    )
                    .await
                {
                    Some(reply) => reply,
                    None => continue,
                };
            }
            let outcome: Option<SubmitOutcome> = match reply.status {
                StatusCode::OK | StatusCode::ACCEPTED
                    if reply.media_type == SubmitOutcome::MEDIA_TYPE =>
                {
                    SubmitOutcome::decode(&reply.body).ok()
                }
                StatusCode::OK | StatusCode::ACCEPTED => serde_json::from_slice(&reply.body).ok(),
                _ => serde_json::from_slice::<ErrorEnvelope>(&reply.body)
                    .ok()
                    .and_then(|e| e.error.details)
                    .and_then(|d| serde_json::from_value(d).ok()),
            };
            match outcome {
                Some(o) if o.bundle.status == TxStatus::Committed => {
                    match self.verify_receipts(&o.bundle.receipts, txid) {
                        Ok((statement, signers)) if statement.code == attest::CODE_OK => {
                            return Ok(
                                self.committed(statement, signers, o.replayed, index, problems)
                            );
                        }
                        Ok((statement, signers)) => {
                            return Err(ClientError::Rejected {
                                message: format!(
                                    "transaction {txid} committed at height {} with result {}, signed by {}",
                                    statement.height,
                                    statement.code,
                                    signers.join(", ")
                                ),
                                code: statement.code,
                            });
                        }
                        Err(detail) => {
                            problems.push(self.problem(index, ProblemKind::Unverified, detail))
                        }
                    }
                }
                Some(_) if reply.status == StatusCode::ACCEPTED => pending = true,
                Some(_) => problems.push(self.problem(
                    index,
                    ProblemKind::Unverified,
                    "claimed pending with a final status",
                )),
                None if reply.status.is_client_error() => {
                    let (code, message) = error_code(&reply);
                    problems.push(self.problem(
                        index,
                        ProblemKind::Refused,
                        format!("{code}: {message}"),
                    ));
                    let entry = refusals
                        .entry(code.clone())
                        .or_insert_with(|| (BTreeSet::new(), message));
                    entry.0.insert(index);
                    if entry.0.len() >= self.config.threshold() {
                        let names: Vec<String> = entry.0.iter().map(|i| self.name(*i)).collect();
                        return Err(ClientError::Rejected {
                            message: format!(
                                "refused before ordering by {}: {}",
                                names.join(", "),
                                entry.1
                            ),
                            code,
                        });
                    }
                }
                None => problems.push(self.problem(
                    index,
                    ProblemKind::Unverified,
                    format!("unexpected answer {}: {}", reply.status, error_text(&reply)),
                )),
            }
        }
        if pending {
            let deadline = tokio::time::Instant::now() + timeout;
            while tokio::time::Instant::now() < deadline {
                match self.transaction(&txid).await {
                    Ok(TxInfo::Committed(c)) if c.code == attest::CODE_OK => {
                        return Ok(Committed { problems, ..c });
                    }
                    Ok(TxInfo::Committed(c)) => {
                        return Err(ClientError::Rejected {
                            message: format!(
                                "transaction {txid} committed at height {} with result {}",
                                c.height, c.code
                            ),
                            code: c.code,
                        });
                    }
                    _ => tokio::time::sleep(POLL_INTERVAL).await,
                }
            }
            problems.push(ReplicaProblem {
                replica: "*".into(),
                kind: ProblemKind::Unreachable,
                detail: format!("still pending after {} ms", timeout.as_millis()),
            });
        }
        Err(self.conclude(&format!("transaction {txid}"), problems))
    }

    /// The signed transfer [`Client::send`] would submit: verified UTXOs, coin selection,
    /// signature. Keep it until it is committed: resubmitting it is safe, building a new one
    /// after the first may have committed is not.
    pub async fn prepare_send(
        &self,
        from: &str,
        to: &Address,
        amount: Amount,
    ) -> Result<SignedTransaction, ClientError> {
        let key = self.key(from)?;
        let tx = self.build_transfer(&key.public_key(), to, amount).await?;
        sign_with(key, &self.chain_id, tx)
    }

    /// Pays `amount` to `to` from the key named `from`: select coins, sign, submit, verify.
    pub async fn send(
        &self,
        from: &str,
        to: &Address,
        amount: Amount,
    ) -> Result<Committed, ClientError> {
        let signed = self.prepare_send(from, to, amount).await?;
        self.submit(&signed).await
    }

    /// Mints `amount` to `to` with the issuer key named `issuer`, unique by `nonce`.
    pub async fn mint(
        &self,
        issuer: &str,
        to: &Address,
        amount: Amount,
        nonce: u64,
    ) -> Result<Committed, ClientError> {
        let signed = self.prepare_mint(issuer, to, amount, nonce)?;
        self.submit(&signed).await
    }

    /// The signed mint [`Client::mint`] would submit.
    pub fn prepare_mint(
        &self,
        issuer: &str,
        to: &Address,
        amount: Amount,
        nonce: u64,
    ) -> Result<SignedTransaction, ClientError> {
        let key = self.key(issuer)?;
        let tx = self.build_mint(&key.public_key(), to, amount, nonce);
        sign_with(key, &self.chain_id, tx)
    }

    /// A transaction's status: committed (proven by f+1 receipts, whatever the code) or
    /// pending (an unsigned claim). [`ClientError::NotFound`] when f+1 replicas do not know it.
    pub async fn transaction(&self, txid: &Txid) -> Result<TxInfo, ClientError> {
        let path = format!("/v1/transactions/{txid}");
        let mut problems = Vec::new();
        let mut pending_claims = Vec::new();
        let mut not_found = 0usize;
        for index in self.order() {
            let Some(reply) = self.get(index, &path, &mut problems).await else {
                continue;
            };
            if reply.status == StatusCode::NOT_FOUND {
                not_found += 1;
                problems.push(self.problem(index, ProblemKind::Refused, "does not know it"));
                continue;
            }
            let bundle: ReceiptBundle = match (reply.status, serde_json::from_slice(&reply.body)) {
                (StatusCode::OK, Ok(b)) => b,
                _ => {
                    problems.push(self.problem(
                        index,
                        ProblemKind::Unverified,
                        format!("unexpected answer {}: {}", reply.status, error_text(&reply)),
                    ));
                    continue;
                }
            };
            match bundle.status {
                TxStatus::Pending => pending_claims.push(self.name(index)),
                TxStatus::Committed => match self.verify_receipts(&bundle.receipts, *txid) {
                    Ok((statement, signers)) => {
                        return Ok(TxInfo::Committed(
                            self.committed(statement, signers, false, index, problems),
                        ));
                    }
                    Err(detail) => {
                        problems.push(self.problem(index, ProblemKind::Unverified, detail))
                    }
                },
            }
        }
        if !pending_claims.is_empty() {
            return Ok(TxInfo::Pending {
                claimed_by: pending_claims,
            });
        }
        if not_found >= self.config.threshold() {
            return Err(ClientError::NotFound(format!(
                "transaction {txid} is unknown to {not_found} replicas"
            )));
        }
        Err(self.conclude(&format!("transaction {txid}"), problems))
    }

    /// Blocks `from..=to`, accepted when f+1 replicas list exactly the same blocks (blocks
    /// carry no signatures; f+1 identical answers include an honest one). Ask only for heights
    /// at or below a verified height, or lagging replicas will disagree.
    pub async fn blocks(&self, from: u64, to: u64) -> Result<AgreedBlocks, ClientError> {
        if from > to || to - from >= MAX_BLOCK_RANGE {
            return Err(ClientError::Usage(format!(
                "block range {from}..={to} is empty or longer than {MAX_BLOCK_RANGE}"
            )));
        }
        let path = format!("/v1/blocks?from={from}&to={to}");
        let mut problems = Vec::new();
        let mut groups: Vec<(Vec<BlockView>, Vec<usize>)> = Vec::new();
        for index in self.order() {
            let Some(reply) = self.get(index, &path, &mut problems).await else {
                continue;
            };
            let list: BlockList = match (reply.status, serde_json::from_slice(&reply.body)) {
                (StatusCode::OK, Ok(l)) => l,
                _ => {
                    let (code, message) = error_code(&reply);
                    problems.push(self.problem(
                        index,
                        ProblemKind::Refused,
                        format!("{}: {code}: {message}", reply.status),
                    ));
                    continue;
                }
            };
            let position = groups.iter().position(|(b, _)| *b == list.blocks);
            let group = match position {
                Some(p) => &mut groups[p],
                None => {
                    groups.push((list.blocks, Vec::new()));
                    let last = groups.len() - 1;
                    &mut groups[last]
                }
            };
            group.1.push(index);
            if group.1.len() >= self.config.threshold() {
                let (blocks, agreeing) = group.clone();
                for (other, members) in &groups {
                    if *other != blocks {
                        for m in members {
                            problems.push(self.problem(
                                *m,
                                ProblemKind::Unverified,
                                "listed different blocks",
                            ));
                        }
                    }
                }
                return Ok(AgreedBlocks {
                    blocks,
                    agreed_by: agreeing.iter().map(|i| self.name(*i)).collect(),
                    problems,
                });
            }
        }
        for (_, members) in &groups {
            for m in members {
                problems.push(self.problem(
                    *m,
                    ProblemKind::Unverified,
                    "no f+1 replicas agreed with its list",
                ));
            }
        }
        Err(self.conclude(&format!("blocks {from}..={to}"), problems))
    }

    /// Every replica's own status (unsigned, informational), asked concurrently.
    pub async fn status(&self) -> Vec<ReplicaReport> {
        let mut set = tokio::task::JoinSet::new();
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            let transport = self.transport.clone();
            let endpoint = endpoint.clone();
            let timeout = self.request_timeout();
            set.spawn(async move {
                let r = transport
                    .request(&endpoint, Method::GET, "/v1/status", None, timeout)
                    .await;
                (index, r)
            });
        }
        let mut reports: Vec<ReplicaReport> = self
            .config
            .replicas
            .iter()
            .map(|r| ReplicaReport {
                name: r.name.clone(),
                url: r.url.clone(),
                status: None,
                error: Some("no answer".into()),
            })
            .collect();
        while let Some(joined) = set.join_next().await {
            let Ok((index, result)) = joined else {
                continue;
            };
            let Some(report) = reports.get_mut(index) else {
                continue;
            };
            match result {
                Err(e) => report.error = Some(e.to_string()),
                Ok(reply) if reply.status == StatusCode::OK => {
                    match serde_json::from_slice::<ClusterStatus>(&reply.body) {
                        Ok(s) => {
                            report.status = Some(s);
                            report.error = None;
                        }
                        Err(e) => report.error = Some(format!("malformed status: {e}")),
                    }
                }
                Ok(reply) => {
                    report.error = Some(format!("{}: {}", reply.status, error_text(&reply)))
                }
            }
        }
        reports
    }
}

/// Signs `tx` with `key` after checking it is the signer and the chain is `chain_id`.
pub fn sign_with(
    key: &Keypair,
    chain_id: &ChainId,
    tx: Transaction,
) -> Result<SignedTransaction, ClientError> {
    if tx.chain_id() != chain_id {
        return Err(ClientError::Usage(format!(
            "transaction is for chain {}, this cluster is {chain_id}",
            tx.chain_id()
        )));
    }
    if *tx.signer() != key.public_key() {
        return Err(ClientError::Usage(format!(
            "transaction must be signed by {}, not by key {}",
            tx.signer(),
            key.public_key()
        )));
    }
    Ok(key.sign_tx(tx))
}

fn discard_text(reason: attest::DiscardReason) -> &'static str {
    use attest::DiscardReason as R;
    match reason {
        R::WrongChain => "about another chain",
        R::UnknownReplica => "not a replica of this cluster",
        R::BadSignature => "bad signature",
        R::DuplicateReplica => "repeated",
        R::Equivocation => "it signed two different statements",
        R::Mismatch => "it signed a different result",
        R::Dissent => "it signed a different statement from the quorum",
        _ => "not counted",
    }
}

fn map<T, U>(v: Verified<T>, value: U) -> Verified<U> {
    Verified {
        value,
        height: v.height,
        commitment: v.commitment,
        answered_by: v.answered_by,
        signers: v.signers,
        problems: v.problems,
    }
}

/// A page of a read result's entries.
fn page<T: Clone>(entries: &[T], next_cursor: Option<&str>) -> Page<T> {
    Page {
        entries: entries.to_vec(),
        next_cursor: next_cursor.map(str::to_owned),
    }
}

fn kind_mismatch<T>(v: &Verified<T>) -> ClientError {
    // verify_read binds the result kind to the query kind, so this cannot happen for a
    // verified answer; reported rather than asserted because it concerns remote data.
    ClientError::Unverifiable {
        what: "read".into(),
        threshold: 0,
        problems: vec![ReplicaProblem {
            replica: v.answered_by.clone(),
            kind: ProblemKind::Unverified,
            detail: "result of another kind".into(),
        }],
    }
}

/// The path and query of a read; the limit is always explicit so that the signed query is
/// exactly the one built here.
fn read_path(query: &ReadQuery) -> String {
    let page = |address: &str, kind: &str, cursor: &Option<String>, limit: &u32| {
        let mut p = format!("/v1/addresses/{address}/{kind}?limit={limit}");
        if let Some(c) = cursor {
            p.push_str("&cursor=");
            p.push_str(c);
        }
        p
    };
    match query {
        ReadQuery::Balance { address } => format!("/v1/addresses/{address}/balance"),
        ReadQuery::Utxos {
            address,
            cursor,
            limit,
        } => page(address, "utxos", cursor, limit),
        ReadQuery::History {
            address,
            cursor,
            limit,
        } => page(address, "history", cursor, limit),
        _ => "/v1/supply".into(),
    }
}

fn error_code(reply: &Reply) -> (String, String) {
    match serde_json::from_slice::<ErrorEnvelope>(&reply.body) {
        Ok(e) => (
            printable(&e.error.code, MAX_CODE_CHARS),
            printable(&e.error.message, MAX_TEXT_CHARS),
        ),
        Err(_) => ("unknown".into(), error_text(reply)),
    }
}

/// Longest error code kept from a replica's answer (codes are short snake_case words).
const MAX_CODE_CHARS: usize = 64;
/// Longest error text kept from a replica's answer.
const MAX_TEXT_CHARS: usize = 200;

/// A short, printable excerpt of an answer body.
fn error_text(reply: &Reply) -> String {
    if let Ok(e) = serde_json::from_slice::<ErrorEnvelope>(&reply.body) {
        return format!(
            "{}: {}",
            printable(&e.error.code, MAX_CODE_CHARS),
            printable(&e.error.message, MAX_TEXT_CHARS)
        );
    }
    let short = printable(&String::from_utf8_lossy(&reply.body), MAX_TEXT_CHARS);
    if short.is_empty() {
        return format!("status {}", reply.status);
    }
    short
}

/// `text` from a replica, safe to print on a terminal: control characters (escape sequences
/// could rewrite what the user sees) become `\u{..}` escapes, and it is cut after `max`
/// characters.
fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Bytes;

    fn reply(body: &str) -> Reply {
        Reply {
            status: StatusCode::BAD_REQUEST,
            media_type: "application/json".into(),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn a_replicas_error_text_is_cut_and_cannot_drive_the_terminal() {
        // A lying replica's message with an escape sequence (clear screen, then a fake line)
        // and a code far longer than any real one.
        let body = serde_json::json!({
            "error": {
                "code": format!("bad{}", "x".repeat(500)),
                "message": "\u{1b}[2J\u{1b}[Hsent 100 to you\r\n",
            }
        })
        .to_string();
        let (code, message) = error_code(&reply(&body));
        assert_eq!(code.chars().count(), MAX_CODE_CHARS + 1, "{code}");
        assert!(code.ends_with('…'));
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert_eq!(message, "\\u{1b}[2J\\u{1b}[Hsent 100 to you\\u{d}\\u{a}");
        let text = error_text(&reply(&body));
        assert!(!text.chars().any(char::is_control), "{text:?}");
        // A body that is not an error envelope: the same, and an empty one says the status.
        let raw = error_text(&reply(&format!("\u{7}{}", "y".repeat(1_000))));
        assert!(raw.starts_with("\\u{7}yyy"), "{raw}");
        // The bell's escape (five characters) counts as one of the 200, then the ellipsis.
        assert_eq!(raw.chars().count(), 5 + (MAX_TEXT_CHARS - 1) + 1);
        assert_eq!(error_text(&reply("")), "status 400 Bad Request");
        // Ordinary answers pass unchanged.
        let plain = r#"{"error":{"code":"insufficient_funds","message":"needs 5, has 3"}}"#;
        assert_eq!(
            error_code(&reply(plain)),
            ("insufficient_funds".into(), "needs 5, has 3".into())
        );
    }
}
