//! `ledgerline bench`: the ledger and pipeline benchmarks.

use anyhow::Result;
use clap::Subcommand;

use crate::config::KafkaSettings;
use crate::generator;

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Limits (broker consume rate, PostgreSQL COPY rate) and the pipeline's rate for the same
    /// postings, in one run on the local stack (needs LEDGERLINE_ADMIN_DATABASE_URL).
    Pipeline {
        /// Postings published and posted.
        #[arg(long, default_value_t = 200_000)]
        postings: usize,
        /// Accounts the postings spread over.
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        /// Lines per posting: N or N-M.
        #[arg(long, default_value = "2")]
        lines: String,
        /// Share of postings (0-1) that include one hot account.
        #[arg(long, default_value_t = 0.0)]
        hot_account_share: f64,
        /// Partitions of the benchmark's topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Posters in one consumer group (in this process).
        #[arg(long, default_value_t = 1)]
        posters: usize,
        /// Postings per partition batch; the poster's own default.
        #[arg(long, default_value_t = crate::limits::BATCH_POSTINGS_DEFAULT)]
        batch_postings: usize,
        /// Commit lanes per poster (the poster's --commit-lanes).
        #[arg(long, default_value_t = 2)]
        commit_lanes: usize,
        /// Measure limits A and B and the pipeline this many times, alternating (a noisy
        /// machine's speed moves between runs); the table shows the run with the median ratio
        /// and lists every run.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Leave out latency under load (10%, 50% and 90% of the pipeline's rate).
        #[arg(long)]
        no_latency: bool,
    },
    /// The poster side by side with what a user would pick instead: Kafka Connect with
    /// Debezium's JDBC sink (resolved from Maven Central by ops/peer.sh, run with Java 17),
    /// the same number of postings into a database of its own, with and without a balances
    /// trigger; both rates and the ratios (needs LEDGERLINE_ADMIN_DATABASE_URL).
    Peer {
        /// Postings for each side.
        #[arg(long, default_value_t = 200_000)]
        postings: usize,
        /// Accounts the postings spread over.
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        /// Partitions of each side's topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// The sink's tasks.
        #[arg(long, default_value_t = 2)]
        tasks: usize,
        /// The sink's batch size.
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
    },
    /// What the query API costs the poster: the same topic posted into fresh databases
    /// without and with the API answering QPS balance and history requests per second,
    /// alternating; the lookups' latencies (needs LEDGERLINE_ADMIN_DATABASE_URL).
    Api {
        /// Postings published and posted in each run.
        #[arg(long, default_value_t = 200_000)]
        postings: usize,
        /// Accounts the postings spread over (and the API looks up).
        #[arg(long, default_value_t = 1_000)]
        accounts: usize,
        /// Partitions of the benchmark's topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// API requests per second while the poster runs.
        #[arg(long, default_value_t = 100.0)]
        qps: f64,
        /// Pairs of runs (without, with the API).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// What holds and limits cost per request: plain postings, limited accounts, holds, and
    /// holds on limited accounts, committed through the poster's batch commit (no Kafka) into
    /// fresh databases (needs LEDGERLINE_ADMIN_DATABASE_URL).
    Holds {
        /// Requests committed per scenario.
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        /// Accounts they post to and hold on.
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        /// Postings per committed batch (the poster's default).
        #[arg(long, default_value_t = crate::limits::BATCH_POSTINGS_DEFAULT)]
        batch: usize,
        /// Share of generator rolls that start a hold's life in the holds scenarios.
        #[arg(long, default_value_t = 0.5)]
        hold_share: f64,
        /// Each scenario is measured this many times, alternating; the median is shown.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Load a synthetic ledger into a fresh database (needs LEDGERLINE_ADMIN_DATABASE_URL) and
    /// time the trial balance, an as-of balance and a full verify.
    Ledger {
        /// Journal lines loaded.
        #[arg(long, default_value_t = 1_000_000)]
        lines: usize,
        /// Accounts they post to.
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        /// Postings per committed batch.
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
    },
}

/// The benchmarks' administrator URL: they make scratch databases of their own.
fn admin_url() -> Result<crate::config::Secret> {
    Ok(
        crate::config::secret_from_env("LEDGERLINE_ADMIN_DATABASE_URL")?.ok_or(
            crate::config::ConfigError::Missing {
                name: "LEDGERLINE_ADMIN_DATABASE_URL",
            },
        )?,
    )
}

/// `bench api`'s posters: two-line postings, no hot account, one poster with two lanes.
fn api_posters(
    postings: usize,
    accounts: usize,
    partitions: i32,
    runs: usize,
) -> crate::bench::pipeline::PipelineSettings {
    crate::bench::pipeline::PipelineSettings {
        postings,
        accounts,
        lines: 2..=2,
        hot_account_share: 0.0,
        partitions,
        posters: 1,
        batch_postings: crate::limits::BATCH_POSTINGS_DEFAULT,
        commit_lanes: 2,
        runs: runs.clamp(1, 10),
        latency: false,
    }
}

pub(super) async fn bench(cmd: BenchCmd) -> Result<()> {
    let admin = admin_url()?;
    match cmd {
        BenchCmd::Ledger {
            lines,
            accounts,
            batch,
        } => {
            crate::bench::ledger::ledger(
                &admin,
                lines,
                accounts,
                batch.clamp(1, crate::limits::BATCH_POSTINGS_MAX),
            )
            .await
        }
        BenchCmd::Holds {
            requests,
            accounts,
            batch,
            hold_share,
            runs,
        } => {
            let settings = crate::bench::holds::HoldsSettings {
                requests,
                accounts,
                batch: batch.clamp(1, crate::limits::BATCH_POSTINGS_MAX),
                hold_share: hold_share.clamp(0.0, 1.0),
                runs: runs.clamp(1, 10),
            };
            crate::bench::holds::holds(&admin, &settings).await
        }
        BenchCmd::Peer {
            postings,
            accounts,
            partitions,
            tasks,
            batch,
        } => {
            let settings = crate::bench::peer::PeerSettings {
                postings,
                accounts,
                partitions: partitions.clamp(1, 64),
                tasks: tasks.clamp(1, 16),
                batch: batch.clamp(1, 50_000),
            };
            crate::bench::peer::peer(&admin, &KafkaSettings::from_env()?, &settings).await
        }
        BenchCmd::Api {
            postings,
            accounts,
            partitions,
            qps,
            runs,
        } => {
            let settings = api_posters(postings, accounts, partitions, runs);
            let qps = qps.clamp(1.0, 10_000.0);
            crate::bench::api::api(&admin, &KafkaSettings::from_env()?, &settings, qps).await
        }
        BenchCmd::Pipeline {
            postings,
            accounts,
            lines,
            hot_account_share,
            partitions,
            posters,
            batch_postings,
            commit_lanes,
            runs,
            no_latency,
        } => {
            let settings = crate::bench::pipeline::PipelineSettings {
                latency: !no_latency,
                postings,
                accounts,
                lines: generator::parse_line_range(&lines)?,
                hot_account_share,
                partitions,
                posters: posters.max(1),
                batch_postings: batch_postings.clamp(1, crate::limits::BATCH_POSTINGS_MAX),
                commit_lanes: commit_lanes.clamp(1, crate::limits::COMMIT_LANES_MAX),
                runs: runs.clamp(1, 10),
            };
            crate::bench::pipeline::pipeline(&admin, &KafkaSettings::from_env()?, &settings).await
        }
    }
}
