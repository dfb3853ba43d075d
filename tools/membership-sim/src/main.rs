//! membership-sim: a deterministic discrete-event simulation that measures
//! failure detection, false positives, join, restart and overhead of
//! (1) real `foca` (SWIM) agents over a simulated lossy datagram network and
//! (2) flit's route-ping rule over simulated TCP lanes, side by side, for
//! the clustering design (DESIGN.md section 7). Every run is seeded; the
//! same command gives the same tables. Nothing here touches the router.
//!
//! Usage: `cargo run --release -p membership-sim -- --out DIR [--seeds 200]
//! [--fp-hours 10] [--shards 4] [--threads 2]`; writes DIR/results.md.
//! `MS_TRACE=1` prints the notification timeline of every silent-peer run
//! in which some survivor took over 2 s.
#![forbid(unsafe_code)]

mod queue;
mod route;
mod swim;

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use queue::{Latency, Nanos, MS};
use swim::{Cluster, NodeId, Profile, Seen};

#[derive(Parser, Debug)]
#[command(about = "Simulate foca and flit's route pings: detection, false positives, join, restart, overhead")]
struct Args {
    /// Directory for results.md.
    #[arg(long)]
    out: PathBuf,
    /// Runs (seeds) per cell for detection, join and restart.
    #[arg(long, default_value_t = 200)]
    seeds: u64,
    /// Simulated hours per cell for false positives.
    #[arg(long, default_value_t = 10)]
    fp_hours: u64,
    /// Shards per node (lanes per node pair and direction) for route pings.
    #[arg(long, default_value_t = 4)]
    shards: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Only these cluster sizes (default 3,5,9).
    #[arg(long, value_delimiter = ',', default_values_t = vec![3usize, 5, 9])]
    sizes: Vec<usize>,
}

const SECOND: Nanos = 1000 * MS;
const PROFILES: [Profile; 4] = [Profile::Proposed, Profile::Tuned, Profile::Simple, Profile::Lan];
const LATENCIES: [Latency; 2] = [Latency::Loopback, Latency::Lan];

fn par_map<T: Send>(count: u64, threads: usize, f: impl Fn(u64) -> T + Sync) -> Vec<T> {
    let threads = threads.max(1) as u64;
    let mut chunks: Vec<Vec<(u64, T)>> = Vec::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|worker| {
                let f = &f;
                scope.spawn(move || (worker..count).step_by(threads as usize).map(|seed| (seed, f(seed))).collect())
            })
            .collect();
        for handle in handles {
            chunks.push(handle.join().expect("worker panicked"));
        }
    });
    let mut all: Vec<(u64, T)> = chunks.into_iter().flatten().collect();
    all.sort_by_key(|(seed, _)| *seed);
    all.into_iter().map(|(_, value)| value).collect()
}

/// p50 / p99 / max in ms of the values, "-" when empty.
fn pct(values: &[Nanos]) -> String {
    if values.is_empty() {
        return "- / - / -".into();
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    let ms = |v: Nanos| v as f64 / MS as f64;
    format!("{:.0} / {:.0} / {:.0}", ms(rank(0.5)), ms(rank(0.99)), ms(*sorted.last().expect("non-empty")))
}

fn loss_name(loss: f64) -> String {
    format!("{}%", loss * 100.0)
}

/// A converged cluster of `n`, run on for a random 2-5 s so probe orders
/// and phases are mixed; `None` if it did not converge in 30 s.
fn settled(profile: Profile, n: usize, latency: Latency, loss: f64, seed: u64) -> Option<(Cluster, StdRng)> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut cluster = Cluster::new(n, profile.config(n), latency, loss, seed);
    step_until(&mut cluster, 30 * SECOND, 20 * MS, |c| c.converged())?;
    let extra = rng.random_range(2 * SECOND..5 * SECOND);
    let until = cluster.now() + extra;
    cluster.run_until(until);
    Some((cluster, rng))
}

/// Runs in steps of `step` until `done` or `limit` from now; the time it held.
fn step_until(
    cluster: &mut Cluster,
    limit: Nanos,
    step: Nanos,
    mut done: impl FnMut(&Cluster) -> bool,
) -> Option<Nanos> {
    let end = cluster.now() + limit;
    loop {
        if done(cluster) {
            return Some(cluster.now());
        }
        if cluster.now() >= end {
            return None;
        }
        let next = (cluster.now() + step).min(end);
        cluster.run_until(next);
    }
}

/// When each of `observers` first saw `subject` as `kinds`, at or after `since`.
fn first_seen(
    cluster: &Cluster,
    observers: &[usize],
    subject: &NodeId,
    kinds: &[Seen],
    since: Nanos,
) -> Vec<Option<Nanos>> {
    observers
        .iter()
        .map(|&observer| {
            cluster
                .observations
                .iter()
                .find(|o| o.observer == observer && o.at >= since && kinds.contains(&o.kind) && o.subject == *subject)
                .map(|o| o.at - since)
        })
        .collect()
}

/// Like [`first_seen`] for node `id` at `generation` or a later one (a
/// node declared down by mistake comes back with the next generation).
fn first_seen_id(
    cluster: &Cluster,
    observers: &[usize],
    subject: &NodeId,
    kinds: &[Seen],
    since: Nanos,
) -> Vec<Option<Nanos>> {
    observers
        .iter()
        .map(|&observer| {
            cluster
                .observations
                .iter()
                .find(|o| {
                    o.observer == observer
                        && o.at >= since
                        && kinds.contains(&o.kind)
                        && o.subject.id == subject.id
                        && o.subject.generation >= subject.generation
                })
                .map(|o| o.at - since)
        })
        .collect()
}

/// Down notifications about a node that is alive (any generation) at the
/// time: (notifications, distinct identities declared down).
fn false_downs(cluster: &Cluster, since: Nanos, exclude: Option<u32>) -> (usize, usize) {
    let mut identities = Vec::new();
    let mut notifications = 0;
    for o in cluster.observations.iter().filter(|o| o.at >= since && o.kind == Seen::Down) {
        if Some(o.subject.id) == exclude {
            continue;
        }
        notifications += 1;
        if !identities.contains(&o.subject) {
            identities.push(o.subject.clone());
        }
    }
    (notifications, identities.len())
}

struct Detection {
    first: Option<Nanos>,
    all: Option<Nanos>,
    false_downs: usize,
}

fn foca_silent(profile: Profile, n: usize, latency: Latency, loss: f64, seed: u64) -> Option<Detection> {
    let (mut cluster, mut rng) = settled(profile, n, latency, loss, seed)?;
    let victim = rng.random_range(0..n);
    let victim_id = cluster.identity(victim);
    let survivors: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    cluster.silence(victim);
    let t0 = cluster.now();
    let done = |c: &Cluster| first_seen(c, &survivors, &victim_id, &[Seen::Down], t0).iter().all(Option::is_some);
    step_until(&mut cluster, 60 * SECOND, 50 * MS, done);
    let seen = first_seen(&cluster, &survivors, &victim_id, &[Seen::Down], t0);
    if std::env::var_os("MS_TRACE").is_some()
        && (seen.iter().any(Option::is_none) || seen.iter().flatten().any(|&v| v > 2 * SECOND))
    {
        eprintln!("seed {seed} n {n} loss {loss} victim {victim} t0 {t0}");
        for o in &cluster.observations {
            if o.at + 3 * SECOND >= t0 {
                eprintln!(
                    "  {:>8} obs {} {:?} {}/{}",
                    (o.at as i64 - t0 as i64) / 1_000_000,
                    o.observer,
                    o.kind,
                    o.subject.id,
                    o.subject.generation
                );
            }
        }
        for &s in &survivors {
            eprintln!(
                "  view {s}: {:?}",
                cluster.active_members(s).iter().map(|m| (m.id, m.generation)).collect::<Vec<_>>()
            );
        }
    }
    let first = seen.iter().flatten().copied().min();
    let all = if seen.iter().all(Option::is_some) { seen.iter().flatten().copied().max() } else { None };
    Some(Detection { first, all, false_downs: false_downs(&cluster, t0, Some(victim_id.id)).1 })
}

fn route_silent(model: route::Model, n: usize, seed: u64) -> Detection {
    let mut rng = StdRng::seed_from_u64(seed);
    let warmup = rng.random_range(5 * SECOND..8 * SECOND);
    let per_survivor: Vec<Option<(Nanos, Nanos)>> =
        (0..n - 1).map(|s| route::detect_silent(model, seed * 64 + s as u64, warmup, 60 * SECOND)).collect();
    let first = per_survivor.iter().flatten().map(|(first, _)| *first).min();
    let all = if per_survivor.iter().all(Option::is_some) {
        per_survivor.iter().flatten().map(|(_, all)| *all).max()
    } else {
        None
    };
    Detection { first, all, false_downs: 0 }
}

fn detection_row(out: &mut String, name: &str, n: usize, latency: Latency, loss: f64, runs: &[Option<Detection>]) {
    let ok: Vec<&Detection> = runs.iter().flatten().collect();
    let firsts: Vec<Nanos> = ok.iter().filter_map(|d| d.first).collect();
    let alls: Vec<Nanos> = ok.iter().filter_map(|d| d.all).collect();
    let missed = ok.iter().filter(|d| d.all.is_none()).count();
    let over2s = alls.iter().filter(|&&v| v > 2 * SECOND).count() + missed;
    let unconverged = runs.len() - ok.len();
    let fds: usize = ok.iter().map(|d| d.false_downs).sum();
    let _ = writeln!(
        out,
        "| {name} | {n} | {} | {} | {} | {} | {over2s}/{} | {missed} | {fds} | {unconverged} |",
        latency.name(),
        loss_name(loss),
        pct(&firsts),
        pct(&alls),
        ok.len()
    );
}

fn scenario_a(args: &Args, out: &mut String) {
    let _ = writeln!(out, "\n## (a) A node goes silent: time until survivors see it down (ms)\n");
    let _ = writeln!(out, "First = the first survivor (foca: `MemberDown`; route pings: the first lane closed, that shard stops routing to it). All = every survivor (foca: every survivor's `MemberDown`; route pings: every lane of every survivor closed, `flit cluster ls` shows it down everywhere). `>2s` counts runs where *all* took longer than 2 s or never happened within 60 s (`missed`). `other downs` = live nodes declared down during the run (all runs together). `unconv` = runs whose cluster did not converge in 30 s (skipped).\n");
    let _ = writeln!(out, "| detector | N | latency | loss | first p50 / p99 / max | all p50 / p99 / max | >2s | missed | other downs | unconv |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for &n in &args.sizes {
        for latency in LATENCIES {
            for loss in [0.0, 0.01, 0.05] {
                for profile in PROFILES {
                    let runs = par_map(args.seeds, args.threads, |seed| foca_silent(profile, n, latency, loss, seed));
                    detection_row(out, profile.name(), n, latency, loss, &runs);
                }
                for rto in [route::Rto::Fixed, route::Rto::Backoff] {
                    if loss == 0.0 && rto == route::Rto::Backoff {
                        continue;
                    }
                    let model = route::Model { shards: args.shards, latency, loss, rto };
                    let runs = par_map(args.seeds, args.threads, |seed| Some(route_silent(model, n, seed)));
                    let name = format!("route pings ({} shards, {})", args.shards, rto.name());
                    detection_row(out, &name, n, latency, loss, &runs);
                }
                eprintln!("(a) n={n} {} loss={loss} done", latency.name());
            }
        }
    }
}

fn scenario_b(args: &Args, out: &mut String) {
    let _ = writeln!(
        out,
        "\n## (b) False positives: no failure, lossy network, {} simulated hours per row\n",
        args.fp_hours
    );
    let _ = writeln!(out, "foca: `declared/h` = distinct live identities declared Down per hour in the whole cluster (each makes that node renew its generation and rejoin), `notif/h` = `MemberDown` notifications about live nodes per hour (all observers). Route pings: `lane closes/h` = lane closes in the whole cluster per hour (N(N-1) ordered pairs x shards lanes; each drops that shard's traffic to that node until the redial, 100 ms + handshake), `declared/h` = times some node's `cluster ls` showed a live node down (all its shards' lanes down at once) per hour.\n");
    let _ = writeln!(out, "| detector | N | latency | loss | declared/h | notif/h (foca) or lane closes/h (routes) |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let hour = 3600 * SECOND;
    for &n in &args.sizes {
        for latency in LATENCIES {
            for loss in [0.01, 0.05] {
                for profile in PROFILES {
                    let runs = par_map(args.fp_hours, args.threads, |seed| {
                        let (mut cluster, _) = settled(profile, n, latency, loss, 10_000 + seed)?;
                        let t0 = cluster.now();
                        cluster.run_until(t0 + hour);
                        let (notifications, declared) = false_downs(&cluster, t0, None);
                        Some((notifications, declared))
                    });
                    let hours = runs.iter().flatten().count().max(1) as f64;
                    let notifications: usize = runs.iter().flatten().map(|r| r.0).sum();
                    let declared: usize = runs.iter().flatten().map(|r| r.1).sum();
                    let _ = writeln!(
                        out,
                        "| {} | {n} | {} | {} | {:.2} | {:.2} |",
                        profile.name(),
                        latency.name(),
                        loss_name(loss),
                        declared as f64 / hours,
                        notifications as f64 / hours
                    );
                }
                for rto in [route::Rto::Fixed, route::Rto::Backoff] {
                    let model = route::Model { shards: args.shards, latency, loss, rto };
                    // Ordered pairs are independent: simulate pair-hours.
                    let pairs = (n * (n - 1)) as u64;
                    let runs = par_map(args.fp_hours * pairs, args.threads, |seed| {
                        let mut pair = route::Pair::new(model, 20_000 + seed);
                        pair.run_until(hour);
                        (pair.closes.len(), pair.node_down.len())
                    });
                    let hours = args.fp_hours as f64;
                    let closes: usize = runs.iter().map(|r| r.0).sum();
                    let downs: usize = runs.iter().map(|r| r.1).sum();
                    let _ = writeln!(
                        out,
                        "| route pings ({} shards, {}) | {n} | {} | {} | {:.2} | {:.2} |",
                        args.shards,
                        rto.name(),
                        latency.name(),
                        loss_name(loss),
                        downs as f64 / hours,
                        closes as f64 / hours
                    );
                }
                eprintln!("(b) n={n} {} loss={loss} done", latency.name());
            }
        }
    }
}

fn scenario_c(args: &Args, out: &mut String) {
    let _ = writeln!(out, "\n## (c) A node joins by announcing to one seed (ms)\n");
    let _ = writeln!(out, "N = cluster size after the join. `all know it` = every old node got `MemberUp(joiner)`; `it knows all` = the joiner got `MemberUp` for every old node. The embedding re-announces every 500 ms until the joiner knows a member (an announce can be lost).\n");
    let _ = writeln!(out, "| detector | N | latency | loss | all know it p50 / p99 / max | it knows all p50 / p99 / max | not done in 30 s |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for &n in &args.sizes {
        for latency in LATENCIES {
            for loss in [0.0, 0.01, 0.05] {
                for profile in PROFILES {
                    let runs = par_map(args.seeds, args.threads, |seed| {
                        let (mut cluster, _) = settled(profile, n - 1, latency, loss, 30_000 + seed)?;
                        let joiner = cluster.join();
                        let joiner_id = cluster.identity(joiner);
                        let t0 = cluster.now();
                        let olds: Vec<usize> = (0..n - 1).collect();
                        let old_ids: Vec<NodeId> = olds.iter().map(|&i| cluster.identity(i)).collect();
                        let view = |c: &Cluster| -> (Option<Nanos>, Option<Nanos>) {
                            let know_it = first_seen_id(c, &olds, &joiner_id, &[Seen::Up, Seen::Rename], t0);
                            let knows: Vec<Option<Nanos>> = old_ids
                                .iter()
                                .map(|id| first_seen_id(c, &[joiner], id, &[Seen::Up, Seen::Rename], t0)[0])
                                .collect();
                            let all = |v: &[Option<Nanos>]| {
                                v.iter().all(Option::is_some).then(|| v.iter().flatten().copied().max().unwrap_or(0))
                            };
                            (all(&know_it), all(&knows))
                        };
                        step_until(&mut cluster, 30 * SECOND, 20 * MS, |c| {
                            let (a, b) = view(c);
                            a.is_some() && b.is_some()
                        });
                        Some(view(&cluster))
                    });
                    let a: Vec<Nanos> = runs.iter().flatten().filter_map(|r| r.0).collect();
                    let b: Vec<Nanos> = runs.iter().flatten().filter_map(|r| r.1).collect();
                    let missed = runs.iter().flatten().filter(|r| r.0.is_none() || r.1.is_none()).count();
                    let _ = writeln!(
                        out,
                        "| {} | {n} | {} | {} | {} | {} | {missed} |",
                        profile.name(),
                        latency.name(),
                        loss_name(loss),
                        pct(&a),
                        pct(&b)
                    );
                }
            }
        }
        eprintln!("(c) n={n} done");
    }
}

fn scenario_d(args: &Args, out: &mut String) {
    let _ = writeln!(out, "\n## (d) Restart with the same id and the next generation: time from restart until every other node has the new generation active (ms)\n");
    let _ = writeln!(out, "The node goes silent (crash), comes back after `down for` as a fresh process with generation + 1 and announces to a seed (nodes 0-2, the victim is never node 0). `seen down first` = runs in which some node saw the old generation Down before the new one was up; a fast restart is usually a `Rename` (old -> new) with no Down in between.\n");
    let _ = writeln!(
        out,
        "| detector | N | latency | loss | down for | up again p50 / p99 / max | seen down first | not done in 30 s |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for &n in &args.sizes {
        for latency in LATENCIES {
            for loss in [0.0, 0.01] {
                for down_for in [500 * MS, 5 * SECOND] {
                    for profile in PROFILES {
                        let runs = par_map(args.seeds, args.threads, |seed| {
                            let (mut cluster, mut rng) = settled(profile, n, latency, loss, 40_000 + seed)?;
                            // Node 0 is the seed others announce to; restart another.
                            let victim = rng.random_range(1..n);
                            let old_id = cluster.identity(victim);
                            cluster.silence(victim);
                            let crash = cluster.now();
                            cluster.run_until(crash + down_for);
                            let new_id = cluster.restart(victim);
                            let t0 = cluster.now();
                            let others: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
                            let up = |c: &Cluster| {
                                let seen = first_seen_id(c, &others, &new_id, &[Seen::Up, Seen::Rename], t0);
                                seen.iter()
                                    .all(Option::is_some)
                                    .then(|| seen.iter().flatten().copied().max().unwrap_or(0))
                            };
                            step_until(&mut cluster, 30 * SECOND, 20 * MS, |c| up(c).is_some());
                            let downed = cluster
                                .observations
                                .iter()
                                .any(|o| o.at >= crash && o.kind == Seen::Down && o.subject == old_id);
                            Some((up(&cluster), downed))
                        });
                        let ups: Vec<Nanos> = runs.iter().flatten().filter_map(|r| r.0).collect();
                        let downed = runs.iter().flatten().filter(|r| r.1).count();
                        let missed = runs.iter().flatten().filter(|r| r.0.is_none()).count();
                        let _ = writeln!(
                            out,
                            "| {} | {n} | {} | {} | {} ms | {} | {downed}/{} | {missed} |",
                            profile.name(),
                            latency.name(),
                            loss_name(loss),
                            down_for / MS,
                            pct(&ups),
                            runs.iter().flatten().count()
                        );
                    }
                }
            }
        }
        eprintln!("(d) n={n} done");
    }
}

fn scenario_e(args: &Args, out: &mut String) {
    let _ = writeln!(
        out,
        "\n## (e) Overhead at steady state, per node (no loss, loopback, 120 s after convergence, mean of 5 runs)\n"
    );
    let _ = writeln!(out, "foca: `payload B/s` = foca packets + 24 B envelope (cluster hash + HMAC tag) each; `wire B/s` adds 28 B IPv4+UDP per datagram. Route pings: each node dials `shards x (N-1)` lanes, pings each every 250 ms (16 B) and answers as many pings with pongs (16 B); on the wire +52 B TCP/IP per segment plus one pure ACK per pong (the next ping is 250 ms later, past the 40 ms delayed-ACK timer; the ping's ACK rides on the pong).\n");
    let _ = writeln!(out, "| detector | N | packets/s sent | payload B/s sent | wire B/s sent | mean foca packet B |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let window = 120 * SECOND;
    for &n in &args.sizes {
        for profile in PROFILES {
            let runs = par_map(5, args.threads, |seed| {
                let (mut cluster, _) = settled(profile, n, Latency::Loopback, 0.0, 50_000 + seed)?;
                let packets0: u64 = cluster.sent_packets.iter().sum();
                let bytes0: u64 = cluster.sent_bytes.iter().sum();
                let t0 = cluster.now();
                cluster.run_until(t0 + window);
                let packets = cluster.sent_packets.iter().sum::<u64>() - packets0;
                let bytes = cluster.sent_bytes.iter().sum::<u64>() - bytes0;
                Some((packets, bytes))
            });
            let ok: Vec<&(u64, u64)> = runs.iter().flatten().collect();
            let node_seconds = (ok.len() * n) as f64 * (window / SECOND) as f64;
            let packets: u64 = ok.iter().map(|r| r.0).sum();
            let bytes: u64 = ok.iter().map(|r| r.1).sum();
            let pps = packets as f64 / node_seconds;
            let payload = (bytes + packets * swim::ENVELOPE_BYTES) as f64 / node_seconds;
            let wire = payload + pps * swim::UDP_IP_HEADER_BYTES as f64;
            let _ = writeln!(
                out,
                "| {} | {n} | {pps:.1} | {payload:.0} | {wire:.0} | {:.1} |",
                profile.name(),
                bytes as f64 / packets.max(1) as f64
            );
        }
        let lanes = (args.shards * (n - 1)) as f64;
        let per_second = 1000.0 / 250.0;
        let segments = 2.0 * lanes * per_second;
        let acks = lanes * per_second;
        let payload = segments * route::PING_BYTES as f64;
        let wire = payload + (segments + acks) * route::TCP_IP_HEADER_BYTES as f64;
        let _ = writeln!(
            out,
            "| route pings ({} shards) | {n} | {:.1} | {payload:.0} | {wire:.0} | - |",
            args.shards,
            segments + acks
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# membership-sim results\n\nseeds per cell: {}, false-positive hours per cell: {}, shards per node (route pings): {}, sizes: {:?}",
        args.seeds, args.fp_hours, args.shards, args.sizes
    );
    let started = std::time::Instant::now();
    let path = args.out.join("results.md");
    for scenario in [scenario_a, scenario_c, scenario_d, scenario_e, scenario_b] {
        scenario(&args, &mut out);
        std::fs::write(&path, &out).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("elapsed {:.0} s", started.elapsed().as_secs_f64());
    }
    print!("{out}");
    Ok(())
}
