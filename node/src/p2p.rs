//! The replicas' authenticated p2p network: commonware's `lookup` network (every replica's
//! address is in the genesis), SAKE handshakes under the replica's consensus key, and the dial
//! schedule that lets replicas started at the same moment connect.

use commonware_cryptography::{ChaCha20Poly1305, ed25519::PrivateKey};
use commonware_p2p::authenticated::lookup;
use commonware_stream::{
    SakeCups,
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::NZUsize;
use std::{net::SocketAddr, num::NonZeroUsize, time::Duration};

/// The handshake every connection runs.
pub type Handshake = SakeCups<PrivateKey, ChaCha20Poly1305>;

/// Minimum time between two connection attempts to one peer, counted on each side over both
/// its own dials and the connections it accepts.
///
/// commonware rejects an incoming connection from a peer it reserved (dialed, or accepted
/// from) less than this long ago, and schedules its own next dial to that peer this long plus a
/// random jitter of up to half of it after. So when one replica of a pair restarts, the
/// other's failed dials to it during the outage make it turn the first dials back, each
/// rejected dial restarts the dialer's own wait, and the two can miss each other for several
/// rounds. Each round lasts about this long, so it is short: 100 ms. Measured on commonware's
/// simulated network (the simulation the test below runs, over 40 seeds): a replica restarted
/// after 4 s heard from every peer within 0.22 s at the median and 0.88 s at worst, against
/// 1.1 and 3.8 s with a 500 ms cooldown and a 50 ms period. On real loopback processes with
/// the 500 ms cooldown (the fault tests' logs), a restarted replica reached one peer only
/// after 1.5-3 s.
pub const PEER_COOLDOWN: Duration = Duration::from_millis(100);

/// How often the dialer wakes to dial a peer that is due: well under [`PEER_COOLDOWN`].
///
/// commonware rounds each scheduled dial up to the dialer's next wake-up, never sooner than one
/// period away. With the period as long as the cooldown (which this replica had before: its
/// cooldown set to 500 ms and commonware's 500 ms period), the jitter is rounded away: every
/// replica dials a missing peer exactly once a second, and two replicas started together stay
/// in phase. When both dial each other within a handshake's time, each rejects the other's
/// incoming connection because its own outgoing one holds the peer's reservation, and they
/// retry in step. Seen in the fault tests on loopback: a pair of replicas never connected in
/// the first six seconds of a cluster. Neither heard the other, so each voted to skip the
/// other's views at once (simplex's skip on inactivity), and once a third replica was down
/// every view either of them led waited out the certification timeout (2 s).
pub const DIAL_PERIOD: Duration = Duration::from_millis(20);

/// The p2p configuration of a replica with `signer`'s key, listening on `listen`, in a chain
/// of `replicas` replicas whose largest message is `max_message_size`.
pub fn config(
    signer: PrivateKey,
    namespace: &[u8],
    listen: SocketAddr,
    replicas: usize,
    max_message_size: u32,
) -> lookup::Config<Handshake> {
    let handshake = Cups::<_, ChaCha20Poly1305>::new(
        Sake {
            signer,
            synchrony_bound: Duration::from_secs(5),
            max_handshake_age: Duration::from_secs(10),
            version: sake::Version::V1,
        },
        cups::Version::V1,
    );
    let mut cfg = lookup::Config::local(
        handshake,
        namespace,
        listen,
        NonZeroUsize::new(replicas).unwrap_or(NZUsize!(1)),
        max_message_size,
        NZUsize!(4_096),
    );
    cfg.peer_connection_cooldown = PEER_COOLDOWN;
    cfg.dial_frequency = DIAL_PERIOD;
    // The replica set is static (the genesis), so only one peer set is ever tracked.
    cfg.tracked_peer_sets = NZUsize!(1);
    cfg
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::cast_possible_truncation
    )]

    use super::*;
    use commonware_cryptography::Signer as _;
    use commonware_p2p::{
        Address, AddressableManager as _, Receiver as _, Recipients, Sender as _,
    };
    use commonware_runtime::{
        Clock as _, Quota, Runner as _, Spawner as _, Supervisor as _, deterministic,
    };
    use commonware_utils::{NZU32, ordered::Map};
    use std::{
        collections::HashSet,
        net::{IpAddr, Ipv4Addr},
    };

    const REPLICAS: usize = 4;

    /// Starts `REPLICAS` networks with [`config`] (adjusted by `tune`): every replica but the
    /// last at time zero (as `coffer-node devnet` and a compose file start them), the last after
    /// `late` (as a replica restarted while its peers kept dialing it). Returns, for each
    /// replica, how long until it had heard from every peer directly (`None`: not within
    /// `within` of the last start).
    fn connect_times(
        seed: u64,
        late: Duration,
        within: Duration,
        tune: impl Fn(&mut lookup::Config<Handshake>),
    ) -> Vec<Option<Duration>> {
        let runner = deterministic::Runner::new(
            deterministic::Config::new()
                .with_seed(seed)
                .with_timeout(Some(late + within + Duration::from_secs(5))),
        );
        runner.start(|context| async move {
            let keys: Vec<PrivateKey> = (0..REPLICAS)
                .map(|i| PrivateKey::from_seed(i as u64))
                .collect();
            let addr =
                |i: usize| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4_000 + i as u16);
            let peers: Map<_, Address> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| (k.public_key(), Address::Symmetric(addr(i))))
                .collect::<Vec<_>>()
                .try_into()
                .unwrap();
            let start = context.current();
            let mut done = Vec::new();
            for (i, key) in keys.iter().enumerate() {
                if i == REPLICAS - 1 {
                    context.sleep(late).await;
                }
                let mut cfg = config(key.clone(), b"coffer/test/p2p", addr(i), REPLICAS, 1 << 16);
                tune(&mut cfg);
                let (mut network, mut oracle) =
                    lookup::Network::new(context.child("replica").with_attribute("index", i), cfg);
                let _ = oracle.track(0, peers.clone());
                let (mut sender, mut receiver) =
                    network.register(0, Quota::per_second(NZU32!(100)));
                network.start();
                let me = key.public_key();
                // Announce ourselves to every connected peer, every 20 ms.
                context.child("announce").spawn(move |context| async move {
                    loop {
                        let _ = sender.send(Recipients::All, me.as_ref().to_vec(), false);
                        context.sleep(Duration::from_millis(20)).await;
                    }
                });
                let finished = std::sync::Arc::new(std::sync::Mutex::new(None));
                done.push(finished.clone());
                context.child("listen").spawn(move |context| async move {
                    let mut seen = HashSet::new();
                    while let Ok((from, _)) = receiver.recv().await {
                        seen.insert(from);
                        if seen.len() == REPLICAS - 1 {
                            let at = context.current().duration_since(start).unwrap();
                            *finished.lock().unwrap() = Some(at);
                            break;
                        }
                    }
                    while receiver.recv().await.is_ok() {}
                });
            }
            context.sleep(within).await;
            done.iter()
                .map(|d| d.lock().unwrap().map(|at| at.saturating_sub(late)))
                .collect()
        })
    }

    /// Worst time, over 20 seeds, until every replica started at once heard every peer, and
    /// until a replica started 4 s after the others (which kept dialing it meanwhile) heard
    /// every peer.
    fn worst(
        tune: impl Fn(&mut lookup::Config<Handshake>) + Copy,
    ) -> (Option<Duration>, Option<Duration>) {
        let mut together = Some(Duration::ZERO);
        let mut late = Some(Duration::ZERO);
        for seed in 0..20 {
            for t in connect_times(seed, Duration::ZERO, Duration::from_secs(5), tune) {
                together = together.zip(t).map(|(a, b)| a.max(b));
            }
            let restarted =
                connect_times(seed, Duration::from_secs(4), Duration::from_secs(5), tune);
            late = late.zip(restarted[REPLICAS - 1]).map(|(a, b)| a.max(b));
        }
        (together, late)
    }

    /// Replicas started together connect at once, and a restarted replica is back with every
    /// peer well within a view timeout. With this module's earlier schedule (a 500 ms cooldown
    /// and commonware's 500 ms dial period), most of these seeds left a pair of replicas
    /// unconnected for the whole 5 s, in both cases.
    #[test]
    fn replicas_connect_quickly_when_started_together_or_restarted() {
        let (together, late) = worst(|_| {});
        let within = |t: Option<Duration>| t.is_some_and(|t| t < Duration::from_secs(1));
        assert!(within(together), "started together: {together:?}");
        assert!(within(late), "restarted: {late:?}");
        // The schedule this replaced fails the same check.
        let (together, late) = worst(|c| {
            c.peer_connection_cooldown = Duration::from_millis(500);
            c.dial_frequency = Duration::from_millis(500);
        });
        assert!(!within(together) && !within(late), "{together:?} {late:?}");
    }
}
