//! `coffer`: the Coffer wallet command line. See `wallet-cli/README.md` for the commands, the
//! cluster config format and the exit codes.

use clap::{CommandFactory as _, Parser, Subcommand};
use coffer_ledger::{Address, Amount, Keypair, PublicKey, SignedTransaction, Transaction, Txid};
use coffer_wallet::error::exit;
use coffer_wallet::{
    Client, ClientError, ClusterConfig, Committed, KdfParams, Keystore, KeystoreError, TxInfo,
    Verified,
};
use serde::Serialize;
use serde_json::json;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr as _;
use zeroize::Zeroizing;

/// Longest secret read from stdin for `keys import` (64 hex characters plus whitespace).
const MAX_SECRET_LINE: usize = 256;
/// Longest transaction file read by `tx sign` / `tx submit`.
const MAX_TX_FILE_BYTES: u64 = 1 << 20;

#[derive(Parser)]
#[command(
    name = "coffer",
    version,
    about = "Coffer wallet: keys, balances and payments verified against f+1 replica signatures",
    after_help = "Exit codes: 0 ok, 1 usage or config, 2 rejected by the ledger (or insufficient funds, not found), \
3 unverifiable (no f+1 replicas signed the answer), 4 cluster unavailable, 5 keystore or password."
)]
struct Cli {
    /// Cluster client config (JSON). Default: $XDG_CONFIG_HOME/coffer/cluster.json.
    #[arg(long, global = true, env = "COFFER_CLUSTER", value_name = "FILE")]
    cluster: Option<PathBuf>,
    /// Keystore file. Default: $XDG_CONFIG_HOME/coffer/keystore.json.
    #[arg(long, global = true, env = "COFFER_KEYSTORE", value_name = "FILE")]
    keystore: Option<PathBuf>,
    /// Machine-readable output (one JSON document on stdout, errors included).
    #[arg(long, global = true)]
    json: bool,
    /// Also report replicas that failed or disagreed on the way to a verified answer.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// argon2id memory (KiB) for a new keystore.
    #[arg(long, global = true, env = "COFFER_KDF_M_KIB", hide = true)]
    kdf_m_kib: Option<u32>,
    /// argon2id iterations for a new keystore.
    #[arg(long, global = true, env = "COFFER_KDF_T", hide = true)]
    kdf_t: Option<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage keys in the encrypted keystore.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Verified balance of an address or a key name.
    Balance {
        /// Address (coffer1...) or key name.
        who: String,
    },
    /// Verified unspent outputs of an address or a key name.
    Utxos {
        /// Address or key name.
        who: String,
        /// Page size (1..=1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Cursor from a previous page.
        #[arg(long)]
        cursor: Option<String>,
        /// Fetch every page.
        #[arg(long)]
        all: bool,
    },
    /// Pay AMOUNT base units from a key to an address; waits for f+1 signed receipts.
    Send {
        /// Key name to pay from.
        #[arg(long)]
        from: String,
        /// Address or key name to pay.
        #[arg(long)]
        to: String,
        /// Amount in base units.
        amount: u64,
    },
    /// Create AMOUNT base units (issuer keys only).
    Mint {
        /// Issuer key name.
        #[arg(long)]
        issuer: String,
        /// Address or key name to pay.
        #[arg(long)]
        to: String,
        /// Amount in base units.
        amount: u64,
        /// Makes the mint unique; random when absent. Reuse it to retry the same mint safely.
        #[arg(long)]
        nonce: Option<u64>,
    },
    /// Verified history of an address or key name, newest first, one page at a time.
    History {
        /// Address or key name.
        who: String,
        /// Page size (1..=1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Cursor from a previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Transactions: show, and the offline flow build -> sign -> submit.
    #[command(subcommand)]
    Tx(TxCommand),
    /// Recent blocks (listed identically by f+1 replicas).
    Blocks {
        /// First height (default: COUNT blocks before the tip).
        #[arg(long)]
        from: Option<u64>,
        /// Last height (default: the verified tip).
        #[arg(long)]
        to: Option<u64>,
        /// How many blocks when FROM is absent (1..=100).
        #[arg(long, default_value_t = 10)]
        count: u64,
    },
    /// Verified total supply.
    Supply,
    /// Each replica's own status (not signed: informational).
    Status,
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a new key.
    New {
        /// Name for the key ([A-Za-z0-9_.-], up to 64).
        name: String,
    },
    /// Import a secret key (64 hex characters) read from stdin.
    Import {
        /// Name for the key.
        name: String,
    },
    /// List keys (no password needed).
    List,
    /// Show a key's public key and address.
    Show {
        /// Key name.
        name: String,
    },
    /// Print a key's SECRET. Asks for confirmation unless --yes.
    Export {
        /// Key name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum TxCommand {
    /// Show a transaction's status, verified by f+1 receipts.
    Show {
        /// Transaction id (hex).
        txid: String,
    },
    /// Build an unsigned transfer (needs the cluster, not the password).
    Build {
        /// Key name or x-only public key (hex) paying.
        #[arg(long)]
        from: String,
        /// Address or key name to pay.
        #[arg(long)]
        to: String,
        /// Amount in base units.
        amount: u64,
        /// Write the transaction here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign an unsigned transaction file (offline: needs the keystore, not the cluster).
    Sign {
        /// Unsigned transaction JSON.
        file: PathBuf,
        /// Key name to sign with.
        #[arg(long)]
        key: String,
        /// Write the signed transaction here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Submit a signed transaction file; waits for f+1 signed receipts. Safe to repeat.
    Submit {
        /// Signed transaction JSON.
        file: PathBuf,
    },
}

/// Writes one line of output. A reader that went away (`coffer balance | head -0`) is not an
/// error worth a panic, as `println!` would make it: the output is simply not wanted any more.
fn write_stdout(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => eprintln!("error: cannot write output: {e}"),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(exit::UNAVAILABLE);
        }
    };
    let json = cli.json;
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(f) => {
            report_error(&f, json);
            ExitCode::from(f.error.exit_code())
        }
    }
}

/// A failed command: the error, and for a submission that may still commit, the transaction
/// and where it was saved for a safe retry.
struct Failure {
    error: ClientError,
    unconfirmed: Option<(Txid, Option<PathBuf>)>,
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Failure {
            error,
            unconfirmed: None,
        }
    }
}

impl From<KeystoreError> for Failure {
    fn from(error: KeystoreError) -> Self {
        ClientError::from(error).into()
    }
}

fn report_error(f: &Failure, json: bool) {
    let e = &f.error;
    let (txid, saved) = match &f.unconfirmed {
        Some((txid, saved)) => (Some(txid.to_string()), saved.clone()),
        None => (None, None),
    };
    if json {
        let doc = json!({"error": {
            "code": e.code(),
            "message": e.to_string(),
            "exit_code": e.exit_code(),
            "problems": e.problems(),
            "txid": txid,
            "unconfirmed_file": saved,
        }});
        write_stdout(&doc.to_string());
    } else {
        eprintln!("error: {e}");
        if let Some(txid) = &txid {
            eprintln!(
                "note: transaction {txid} may still commit. Check with `coffer tx show {txid}`; do not send again before checking."
            );
            if let Some(path) = &saved {
                eprintln!(
                    "note: it was saved to {}; `coffer tx submit {}` retries it safely (same txid, never applied twice).",
                    path.display(),
                    path.display()
                );
            }
        }
        if let ClientError::Unverifiable { .. } = e {
            eprintln!(
                "hint: the answers did not carry f+1 matching replica signatures; nothing was shown as done. Check the cluster config (keys, chain id) or retry later."
            );
        }
        if let ClientError::Rejected { code, .. } = e {
            match code.as_str() {
                "input_already_spent" => eprintln!(
                    "hint: an input was spent by another transaction (from another device with this key, or a transaction built earlier); `coffer balance` shows what is left, and `coffer send` spends from that."
                ),
                "unknown_input" => eprintln!(
                    "hint: an input never existed, or was spent longer ago than the chain remembers (its genesis spent_horizon, 10,000 blocks by default); `coffer balance` shows what is left, and `coffer send` spends from that."
                ),
                "already_rejected" => eprintln!(
                    "hint: this exact transaction was rejected in an earlier block (an input did not exist yet), and a rejection is final; `coffer send` makes the payment again as a new transaction."
                ),
                _ => {}
            }
        }
        if let ClientError::Keystore(KeystoreError::WrongPassword(_)) = e {
            eprintln!(
                "hint: set COFFER_PASSWORD or type the password you chose at `coffer keys new`."
            );
        }
    }
}

struct Ctx {
    cli: Cli,
}

impl Ctx {
    fn keystore_path(&self) -> Result<PathBuf, ClientError> {
        self.cli
            .keystore
            .clone()
            .or_else(|| coffer_wallet::config::config_dir().map(|d| d.join("keystore.json")))
            .ok_or_else(|| {
                ClientError::Usage("no keystore path: pass --keystore or set HOME".into())
            })
    }

    fn kdf_params(&self) -> KdfParams {
        let d = KdfParams::default();
        KdfParams {
            m_cost_kib: self.cli.kdf_m_kib.unwrap_or(d.m_cost_kib),
            t_cost: self.cli.kdf_t.unwrap_or(d.t_cost),
            p_cost: d.p_cost,
        }
    }

    fn open_keystore(&self) -> Result<Keystore, ClientError> {
        let path = self.keystore_path()?;
        if !path.exists() {
            return Err(KeystoreError::Io {
                path,
                reason: "no such file (create a key with `coffer keys new NAME`)".into(),
            }
            .into());
        }
        Ok(Keystore::open(&path)?)
    }

    /// A client for the configured cluster that starts from the highest height this wallet
    /// has seen verified on that chain (so reads never go back in time across invocations)
    /// and remembers the new one when dropped.
    fn client(&self) -> Result<Remembering, ClientError> {
        let path = self
            .cli
            .cluster
            .clone()
            .or_else(ClusterConfig::default_path)
            .ok_or_else(|| {
                ClientError::Usage("no cluster config: pass --cluster or set COFFER_CLUSTER".into())
            })?;
        let client = Client::new(ClusterConfig::load(&path)?)?;
        let heights = self.heights_path();
        if let Some(h) = heights
            .as_deref()
            .and_then(|p| read_heights(p).get(client.chain_id().as_str()).copied())
        {
            client.observe_height(h);
        }
        let start = client.min_height();
        Ok(Remembering {
            client,
            heights,
            start,
        })
    }

    /// `heights.json` next to the keystore: the highest verified height per chain id.
    fn heights_path(&self) -> Option<PathBuf> {
        let keystore = self.keystore_path().ok()?;
        let dir = keystore.parent()?.to_owned();
        Some(dir.join("heights.json"))
    }

    /// An address given as such or as a key name in the keystore.
    fn resolve_address(&self, who: &str) -> Result<Address, ClientError> {
        if who.starts_with(coffer_ledger::ADDRESS_HRP)
            && let Ok(a) = Address::from_str(who)
        {
            return Ok(a);
        }
        let keystore = self.open_keystore().map_err(|e| match e {
            ClientError::Keystore(KeystoreError::Io { .. }) => {
                ClientError::Usage(format!("{who:?} is neither an address nor a key name"))
            }
            other => other,
        })?;
        keystore.info(who).map(|i| i.address).map_err(|_| {
            ClientError::Usage(format!("{who:?} is neither an address nor a key name"))
        })
    }

    fn unlock(&self, name: &str) -> Result<Keypair, ClientError> {
        let keystore = self.open_keystore()?;
        keystore.info(name)?;
        let password = password(false)?;
        Ok(keystore.unlock(name, &password)?)
    }

    /// Writes a signed transaction whose outcome is unknown to
    /// `<keystore dir>/unconfirmed/<txid>.json` (mode 0600).
    fn save_unconfirmed(&self, signed: &SignedTransaction) -> Result<PathBuf, ClientError> {
        let keystore = self.keystore_path()?;
        let dir = keystore
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("unconfirmed");
        let fail =
            |e: std::io::Error| ClientError::Usage(format!("cannot save {}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let path = dir.join(format!("{}.json", signed.txid()));
        let text = serde_json::to_string_pretty(signed)
            .map_err(|e| ClientError::Usage(format!("cannot encode: {e}")))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(fail)?;
        file.write_all(text.as_bytes()).map_err(fail)?;
        Ok(path)
    }

    fn print<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        if self.cli.json {
            match serde_json::to_string_pretty(value) {
                Ok(s) => write_stdout(&s),
                Err(e) => eprintln!("error: cannot encode output: {e}"),
            }
        } else {
            write_stdout(&human());
        }
    }

    fn notes(&self, problems: &[coffer_wallet::ReplicaProblem]) {
        if self.cli.verbose && !self.cli.json {
            for p in problems {
                eprintln!("note: {} ({:?}): {}", p.replica, p.kind, p.detail);
            }
        }
    }

    fn verified_note<T>(&self, v: &Verified<T>) -> String {
        format!(
            "verified at height {} by {} ({} signatures)",
            v.height,
            v.signers.join(", "),
            v.signers.len()
        )
    }
}

/// Most chains remembered in `heights.json`.
const MAX_REMEMBERED_CHAINS: usize = 64;

fn read_heights(path: &Path) -> std::collections::BTreeMap<String, u64> {
    std::fs::read_to_string(path)
        .ok()
        .filter(|t| t.len() < 64 * 1024)
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// A [`Client`] that saves its highest verified height when dropped (best effort: a wallet
/// that cannot write the file still works, it only loses monotonic reads across runs).
struct Remembering {
    client: Client,
    heights: Option<PathBuf>,
    start: u64,
}

impl std::ops::Deref for Remembering {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Remembering {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Drop for Remembering {
    fn drop(&mut self) {
        let height = self.client.min_height();
        let Some(path) = &self.heights else { return };
        if height <= self.start || !path.parent().is_some_and(Path::exists) {
            return;
        }
        let mut all = read_heights(path);
        let chain = self.client.chain_id().as_str().to_owned();
        if all.len() >= MAX_REMEMBERED_CHAINS && !all.contains_key(&chain) {
            return;
        }
        let entry = all.entry(chain).or_insert(0);
        *entry = (*entry).max(height);
        if let Ok(text) = serde_json::to_string_pretty(&all) {
            let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }
}

/// The keystore password: `COFFER_PASSWORD`, else a prompt on the terminal (twice when
/// `confirm`).
fn password(confirm: bool) -> Result<Zeroizing<String>, ClientError> {
    if let Ok(p) = std::env::var("COFFER_PASSWORD") {
        // An empty value is most likely an unset shell variable (`COFFER_PASSWORD=$PW`): it
        // would encrypt keys under the empty password.
        if p.is_empty() {
            return Err(KeystoreError::Password(
                "COFFER_PASSWORD is empty: set a non-empty password, or unset it to be prompted"
                    .into(),
            )
            .into());
        }
        return Ok(Zeroizing::new(p));
    }
    if !std::io::stdin().is_terminal() {
        return Err(KeystoreError::Password(
            "no terminal to prompt on; set COFFER_PASSWORD".into(),
        )
        .into());
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("Keystore password: ")
            .map_err(|e| KeystoreError::Password(e.to_string()))?,
    );
    if confirm {
        let second = Zeroizing::new(
            rpassword::prompt_password("Repeat password: ")
                .map_err(|e| KeystoreError::Password(e.to_string()))?,
        );
        if *first != *second {
            return Err(KeystoreError::Password("the passwords differ".into()).into());
        }
    }
    if first.is_empty() {
        return Err(KeystoreError::Password("empty password".into()).into());
    }
    Ok(first)
}

fn read_limited(path: &Path) -> Result<String, ClientError> {
    let bad = |e: String| ClientError::Usage(format!("cannot read {}: {e}", path.display()));
    let len = std::fs::metadata(path)
        .map_err(|e| bad(e.to_string()))?
        .len();
    if len > MAX_TX_FILE_BYTES {
        return Err(bad(format!("{len} bytes, above {MAX_TX_FILE_BYTES}")));
    }
    std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))
}

fn write_output(out: Option<&Path>, text: &str) -> Result<(), ClientError> {
    match out {
        Some(path) => std::fs::write(path, format!("{text}\n"))
            .map_err(|e| ClientError::Usage(format!("cannot write {}: {e}", path.display()))),
        None => {
            write_stdout(text);
            Ok(())
        }
    }
}

fn committed_text(c: &Committed) -> String {
    format!(
        "committed {} at height {}{}\nverified by {} ({} receipts)",
        c.txid,
        c.height,
        if c.replayed {
            " (already committed before: not applied twice)"
        } else {
            ""
        },
        c.signers.join(", "),
        c.signers.len()
    )
}

/// Submits `signed`; when the outcome is unknown (no verified answer), saves it next to the
/// keystore so that the user can retry exactly this transaction.
async fn submit_or_save(
    ctx: &Ctx,
    client: &Remembering,
    signed: &SignedTransaction,
) -> Result<Committed, Failure> {
    match client.submit(signed).await {
        Ok(c) => Ok(c),
        Err(error @ (ClientError::Unverifiable { .. } | ClientError::Unavailable { .. })) => {
            let txid = signed.txid();
            let saved = ctx.save_unconfirmed(signed).ok();
            Err(Failure {
                error,
                unconfirmed: Some((txid, saved)),
            })
        }
        Err(e) => Err(e.into()),
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let ctx = Ctx { cli };
    match &ctx.cli.command {
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "coffer", &mut script);
            write_stdout(String::from_utf8_lossy(&script).trim_end());
            Ok(())
        }
        Command::Keys(k) => keys(&ctx, k),
        Command::Balance { who } => {
            let address = ctx.resolve_address(who)?;
            let v = ctx.client()?.balance(&address).await?;
            ctx.notes(&v.problems);
            ctx.print(&json!({"address": address, "balance": v}), || {
                format!(
                    "{address}: {} ({} unspent outputs)\n{}",
                    v.value.amount,
                    v.value.utxo_count,
                    ctx.verified_note(&v)
                )
            });
            Ok(())
        }
        Command::Utxos {
            who,
            limit,
            cursor,
            all,
        } => {
            let address = ctx.resolve_address(who)?;
            let client = ctx.client()?;
            if *all {
                let utxos = client.all_utxos(&address).await?;
                let list: Vec<_> = utxos
                    .iter()
                    .map(|(op, v)| json!({"txid": op.txid, "vout": op.vout, "amount": v}))
                    .collect();
                ctx.print(&json!({"address": address, "utxos": list}), || {
                    let mut s: Vec<String> =
                        utxos.iter().map(|(op, v)| format!("{op}  {v}")).collect();
                    s.push(format!("{} outputs (each page verified)", utxos.len()));
                    s.join("\n")
                });
                return Ok(());
            }
            let v = client
                .utxos_page(&address, cursor.as_deref(), *limit)
                .await?;
            ctx.notes(&v.problems);
            ctx.print(&json!({"address": address, "utxos": v}), || {
                let mut s: Vec<String> = v
                    .value
                    .entries
                    .iter()
                    .map(|e| format!("{}:{}  {}", Txid(e.txid), e.vout, e.amount))
                    .collect();
                if let Some(c) = &v.value.next_cursor {
                    s.push(format!("more: --cursor {c}"));
                }
                s.push(ctx.verified_note(&v));
                s.join("\n")
            });
            Ok(())
        }
        Command::Send { from, to, amount } => {
            let to = ctx.resolve_address(to)?;
            let mut client = ctx.client()?;
            client.add_key(from.clone(), ctx.unlock(from)?);
            let signed = client.prepare_send(from, &to, Amount(*amount)).await?;
            let c = submit_or_save(&ctx, &client, &signed).await?;
            ctx.notes(&c.problems);
            ctx.print(&c, || committed_text(&c));
            Ok(())
        }
        Command::Mint {
            issuer,
            to,
            amount,
            nonce,
        } => {
            let to = ctx.resolve_address(to)?;
            let mut client = ctx.client()?;
            client.add_key(issuer.clone(), ctx.unlock(issuer)?);
            let nonce = nonce.unwrap_or_else(rand::random);
            let signed = client.prepare_mint(issuer, &to, Amount(*amount), nonce)?;
            let c = submit_or_save(&ctx, &client, &signed).await?;
            ctx.notes(&c.problems);
            ctx.print(&json!({"nonce": nonce, "committed": c}), || {
                format!("{}\nnonce {nonce}", committed_text(&c))
            });
            Ok(())
        }
        Command::History { who, limit, cursor } => {
            let address = ctx.resolve_address(who)?;
            let v = ctx
                .client()?
                .history_page(&address, cursor.as_deref(), *limit)
                .await?;
            ctx.notes(&v.problems);
            ctx.print(&json!({"address": address, "history": v}), || {
                let mut s: Vec<String> = v
                    .value
                    .entries
                    .iter()
                    .map(|e| {
                        format!(
                            "#{:<5} height {:<8} {}  +{} -{}",
                            e.seq,
                            e.height,
                            Txid(e.txid),
                            e.received,
                            e.sent
                        )
                    })
                    .collect();
                if v.value.entries.is_empty() {
                    s.push("no transactions".into());
                }
                if let Some(c) = &v.value.next_cursor {
                    s.push(format!("older: --cursor {c}"));
                }
                s.push(ctx.verified_note(&v));
                s.join("\n")
            });
            Ok(())
        }
        Command::Tx(t) => tx(&ctx, t).await,
        Command::Blocks { from, to, count } => {
            let client = ctx.client()?;
            let count = (*count).clamp(1, 100);
            let to = match to {
                Some(t) => *t,
                None => client.supply().await?.height,
            };
            let from = from.unwrap_or_else(|| to.saturating_sub(count - 1).max(1));
            if to == 0 {
                ctx.print(&json!({"blocks": []}), || "no blocks yet".into());
                return Ok(());
            }
            let agreed = client.blocks(from, to).await?;
            ctx.notes(&agreed.problems);
            ctx.print(&agreed, || {
                let mut s: Vec<String> = agreed
                    .blocks
                    .iter()
                    .map(|b| {
                        format!(
                            "height {:<8} {} txs  commitment {}",
                            b.height,
                            b.transactions.len(),
                            b.commitment
                        )
                    })
                    .collect();
                s.push(format!(
                    "listed identically by {}",
                    agreed.agreed_by.join(", ")
                ));
                s.join("\n")
            });
            Ok(())
        }
        Command::Supply => {
            let v = ctx.client()?.supply().await?;
            ctx.notes(&v.problems);
            ctx.print(&json!({"supply": v}), || {
                format!("total supply {}\n{}", v.value, ctx.verified_note(&v))
            });
            Ok(())
        }
        Command::Status => {
            let client = ctx.client()?;
            let reports = client.status().await;
            let answered = reports.iter().filter(|r| r.status.is_some()).count();
            ctx.print(
                &json!({"replicas": reports, "answered": answered, "f": client.config().f}),
                || {
                    reports
                        .iter()
                        .map(|r| match &r.status {
                            Some(s) => format!(
                                "{:<12} {}  height {} view {} {}",
                                r.name,
                                r.url,
                                s.height,
                                s.view,
                                if s.healthy { "healthy" } else { "UNHEALTHY" }
                            ),
                            None => format!(
                                "{:<12} {}  DOWN: {}",
                                r.name,
                                r.url,
                                r.error.as_deref().unwrap_or("no answer")
                            ),
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
            if answered < client.config().threshold() {
                let problems = reports
                    .iter()
                    .filter(|r| r.status.is_none())
                    .map(|r| coffer_wallet::ReplicaProblem {
                        replica: r.name.clone(),
                        kind: coffer_wallet::ProblemKind::Unreachable,
                        detail: r.error.clone().unwrap_or_else(|| "no answer".into()),
                    })
                    .collect();
                return Err(ClientError::Unavailable {
                    what: "status".into(),
                    problems,
                }
                .into());
            }
            Ok(())
        }
    }
}

fn keys(ctx: &Ctx, k: &KeysCommand) -> Result<(), Failure> {
    match k {
        KeysCommand::New { name } => {
            let path = ctx.keystore_path()?;
            let info = Keystore::update(&path, ctx.kdf_params(), |keystore| {
                let password = password(keystore.list().is_empty())?;
                Ok::<_, ClientError>(keystore.add(name, &Keypair::generate(), &password)?)
            })?;
            ctx.print(&info, || {
                format!("created key {}\naddress {}", info.name, info.address)
            });
            Ok(())
        }
        KeysCommand::Import { name } => {
            // On a terminal the secret is read without echo; from a pipe, one line.
            let line = if std::io::stdin().is_terminal() {
                Zeroizing::new(
                    rpassword::prompt_password("Secret key (64 hex characters): ")
                        .map_err(|e| ClientError::Usage(format!("cannot read the secret: {e}")))?,
                )
            } else {
                let mut line = Zeroizing::new(String::new());
                std::io::stdin()
                    .lock()
                    .take_line(&mut line, MAX_SECRET_LINE)
                    .map_err(|e| {
                        ClientError::Usage(format!("cannot read the secret from stdin: {e}"))
                    })?;
                line
            };
            // The error never quotes the input: it is a secret.
            let keypair = Keypair::from_secret_hex(line.trim()).map_err(|_| {
                ClientError::Usage(
                    "secret key: want 64 lower-case hex characters of a valid secp256k1 secret"
                        .into(),
                )
            })?;
            let path = ctx.keystore_path()?;
            let info = Keystore::update(&path, ctx.kdf_params(), |keystore| {
                let password = password(keystore.list().is_empty())?;
                Ok::<_, ClientError>(keystore.add(name, &keypair, &password)?)
            })?;
            ctx.print(&info, || {
                format!("imported key {}\naddress {}", info.name, info.address)
            });
            Ok(())
        }
        KeysCommand::List => {
            let path = ctx.keystore_path()?;
            let list = if path.exists() {
                Keystore::open(&path)?.list()
            } else {
                Vec::new()
            };
            ctx.print(&json!({"keys": list}), || {
                if list.is_empty() {
                    return "no keys".into();
                }
                list.iter()
                    .map(|i| format!("{:<20} {}", i.name, i.address))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        KeysCommand::Show { name } => {
            let info = ctx.open_keystore()?.info(name)?;
            ctx.print(&info, || {
                format!(
                    "name        {}\naddress     {}\npublic key  {}",
                    info.name, info.address, info.public_key
                )
            });
            Ok(())
        }
        KeysCommand::Export { name, yes } => {
            let keystore = ctx.open_keystore()?;
            keystore.info(name)?;
            if !yes {
                eprint!(
                    "This prints the SECRET key of {name:?}. Anyone who sees it can spend its money.\nType the key name to continue: "
                );
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                std::io::stdin()
                    .lock()
                    .take_line(&mut answer, MAX_SECRET_LINE)
                    .map_err(|e| ClientError::Usage(format!("cannot read confirmation: {e}")))?;
                if answer.trim() != name {
                    return Err(ClientError::Usage("not confirmed; nothing printed".into()).into());
                }
            }
            let password = password(false)?;
            let keypair = keystore.unlock(name, &password)?;
            let secret = Zeroizing::new(hex::encode(keypair.secret_bytes()));
            ctx.print(
                &json!({"name": name, "secret_key": secret.as_str()}),
                || secret.to_string(),
            );
            Ok(())
        }
    }
}

async fn tx(ctx: &Ctx, t: &TxCommand) -> Result<(), Failure> {
    match t {
        TxCommand::Show { txid } => {
            let txid = Txid::from_str(txid)
                .map_err(|e| ClientError::Usage(format!("txid {txid:?}: {e}")))?;
            let info = ctx.client()?.transaction(&txid).await?;
            if let TxInfo::Committed(c) = &info {
                ctx.notes(&c.problems);
            }
            ctx.print(&info, || match &info {
                TxInfo::Committed(c) => format!(
                    "{} committed at height {} with result {}\nverified by {} ({} receipts)",
                    c.txid,
                    c.height,
                    c.code,
                    c.signers.join(", "),
                    c.signers.len()
                ),
                TxInfo::Pending { claimed_by } => format!(
                    "{txid} pending (not committed yet, per {}; unsigned claim)",
                    claimed_by.join(", ")
                ),
            });
            Ok(())
        }
        TxCommand::Build {
            from,
            to,
            amount,
            out,
        } => {
            let signer = match PublicKey::from_str(from) {
                Ok(pk) => pk,
                Err(_) => ctx.open_keystore()?.info(from)?.public_key,
            };
            let to = ctx.resolve_address(to)?;
            let client = ctx.client()?;
            let tx = client.build_transfer(&signer, &to, Amount(*amount)).await?;
            let text = serde_json::to_string_pretty(&tx)
                .map_err(|e| ClientError::Usage(format!("cannot encode: {e}")))?;
            write_output(out.as_deref(), &text)?;
            if let Some(path) = out {
                eprintln!(
                    "unsigned transaction {} written to {}",
                    tx.txid(),
                    path.display()
                );
            }
            Ok(())
        }
        TxCommand::Sign { file, key, out } => {
            let text = read_limited(file)?;
            let tx: Transaction = serde_json::from_str(&text).map_err(|e| {
                ClientError::Usage(format!(
                    "{} is not an unsigned transaction: {e}",
                    file.display()
                ))
            })?;
            let keypair = ctx.unlock(key)?;
            let chain = tx.chain_id().clone();
            let signed = coffer_wallet::sign_with(&keypair, &chain, tx)?;
            let text = serde_json::to_string_pretty(&signed)
                .map_err(|e| ClientError::Usage(format!("cannot encode: {e}")))?;
            write_output(out.as_deref(), &text)?;
            if let Some(path) = out {
                eprintln!(
                    "signed transaction {} written to {}",
                    signed.txid(),
                    path.display()
                );
            }
            Ok(())
        }
        TxCommand::Submit { file } => {
            let text = read_limited(file)?;
            let signed: SignedTransaction = serde_json::from_str(&text).map_err(|e| {
                ClientError::Usage(format!(
                    "{} is not a signed transaction: {e}",
                    file.display()
                ))
            })?;
            let client = ctx.client()?;
            let c = client.submit(&signed).await.map_err(|error| Failure {
                unconfirmed: matches!(
                    error,
                    ClientError::Unverifiable { .. } | ClientError::Unavailable { .. }
                )
                .then(|| (signed.txid(), Some(file.clone()))),
                error,
            })?;
            ctx.notes(&c.problems);
            ctx.print(&c, || committed_text(&c));
            Ok(())
        }
    }
}

/// Reads one line of at most `max` bytes.
trait TakeLine {
    fn take_line(&mut self, out: &mut String, max: usize) -> std::io::Result<()>;
}

impl<R: std::io::BufRead> TakeLine for R {
    fn take_line(&mut self, out: &mut String, max: usize) -> std::io::Result<()> {
        let limit = u64::try_from(max).unwrap_or(u64::MAX);
        let mut limited = std::io::Read::take(self, limit);
        limited.read_line(out)?;
        Ok(())
    }
}
