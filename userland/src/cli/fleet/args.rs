//! The fleet's command line: `snapshot bundle ...` (build host) and `snapshot fleet ...`
//! (unit and admin), built only with the `fleet` feature (docs/SIZE.md says what it costs).

use super::super::error::CliError;
use super::super::{Ctx, DEFAULT_FLEET_STATE};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum BundleCmd {
    #[cfg(feature = "fleet-admin")]
    /// Write a bundle directory (payload + manifest.json) from an upper directory
    Create {
        /// An image file whose chain the bundle goes on top of
        #[arg(long, value_name = "IMAGE", required_unless_present = "base_hash")]
        base: Option<PathBuf>,
        /// The chain id (64 hex digits, `snapshot bundle head`) the bundle goes on top of
        #[arg(long, value_name = "HEX", conflicts_with = "base")]
        base_hash: Option<String>,
        /// The directory to pack (an overlay upper directory, whiteouts included)
        #[arg(long, value_name = "DIR")]
        upper: PathBuf,
        /// The bundle directory to write
        #[arg(long, short = 'o', value_name = "DIR")]
        out: PathBuf,
        /// The version string units report
        #[arg(long = "bundle-version", value_name = "STRING")]
        bundle_version: String,
        /// A note for humans
        #[arg(long, default_value = "", value_name = "TEXT")]
        note: String,
        /// Boots the snapshot gets on trial on a unit (1-15)
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=15))]
        trial: u16,
        /// Store the payload as a plain tar instead of gzip
        #[arg(long)]
        no_compress: bool,
    },
    #[cfg(feature = "fleet-admin")]
    /// Add a usign signature over a bundle's manifest (or any FILE) to FILE.sig
    Sign {
        /// A secret key (usign -G, signify -G -n, or `snapshot bundle keygen`)
        #[arg(long, value_name = "SECRET")]
        key: PathBuf,
        /// A bundle directory, or a file
        target: PathBuf,
    },
    /// Check a bundle's signatures, manifest and payload (and with --device, that it applies)
    Verify {
        dir: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
    #[cfg(feature = "fleet-admin")]
    /// Make a usign key pair: PREFIX.pub and PREFIX.sec (unencrypted)
    Keygen {
        prefix: PathBuf,
        #[arg(long, default_value = "snapshot fleet", value_name = "TEXT")]
        comment: String,
    },
    /// Print a public key's key number (its file name in keys.d)
    Fingerprint { key: PathBuf },
    /// Print the chain id of --device's chain: what a bundle for it names as its base
    Head,
    #[cfg(feature = "fleet-admin")]
    /// Write a channel manifest ROOT/CHANNEL.json listing bundle directories under ROOT
    Channel {
        /// The mirror's root directory
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// The channel's name (stable, beta, ...)
        #[arg(long, value_name = "NAME")]
        channel: String,
        /// Days over which the rollout reaches every unit (Gluon's PRIORITY)
        #[arg(long, default_value_t = 0.0, value_name = "DAYS")]
        priority: f64,
        /// Publication time, Unix seconds [default: now]
        #[arg(long, value_name = "UNIX")]
        published: Option<u64>,
        /// Units refuse the manifest this many days after publication (a mirror frozen in
        /// the past holds them back no longer); 0: it never expires
        #[arg(long, default_value_t = 30.0, value_name = "DAYS")]
        expires_days: f64,
        /// Bundle directories, relative to ROOT (the last one given for a base wins)
        #[arg(required = true)]
        bundles: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum FleetCmd {
    /// Check a bundle directory and append it as a snapshot on trial, then reboot
    ///
    /// Nothing reaches flash unless the manifest has enough valid signatures, the payload
    /// matches it, it fits the limit, and the chain's head is the bundle's base.
    Apply {
        dir: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
        /// Do not reboot after writing
        #[arg(long)]
        no_reboot: bool,
    },
    /// Show this unit's state (chain id, snapshots and their trial state, version, last health
    /// check, last rollback and why)
    Status {
        #[command(flatten)]
        args: StatusArgs,
        #[cfg(feature = "fleet-admin")]
        /// Instead, sum up the whole fleet from this MQTT broker (HOST[:PORT], port 1883 by
        /// default): every unit's retained status under PREFIX/+/state, units per chain id
        /// and version, on trial, rolled back and why
        #[arg(long, value_name = "HOST[:PORT]")]
        mqtt: Option<String>,
        #[cfg(feature = "fleet-admin")]
        /// With --mqtt: also write one self-contained HTML page
        #[arg(long, value_name = "FILE", requires = "mqtt")]
        html: Option<PathBuf>,
        #[cfg(feature = "fleet-admin")]
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Publish this unit's status document to an MQTT broker, retained, as PREFIX/UNIT/state
    ///
    /// QoS 1, waited for the broker's acknowledgement; retried with backoff, then exit 26 (the
    /// unit keeps working, the next poll or publish sends the state again).
    Publish {
        #[command(flatten)]
        unit: UnitArgs,
        /// The MQTT broker, HOST[:PORT] (port 1883 by default)
        #[arg(long, value_name = "HOST[:PORT]")]
        mqtt: String,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    #[cfg(feature = "fleet-admin")]
    /// Sum up the fleet from units' `fleet status --json` documents: units per chain id and
    /// version, on trial, rolled back and why
    Report {
        /// UnitStatus documents, one per unit
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print one JSON document (kind FleetReport)
        #[arg(long)]
        json: bool,
        /// Also write one self-contained HTML page
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Poll the channel on the mirrors; take the bundle for this chain when the rollout says so
    ///
    /// Fetches CHANNEL.json (+ .sig) from the mirrors in random order, checks its signatures
    /// and that it is not older than the last one taken, decides by the staggered rollout,
    /// downloads the bundle into RAM (resuming with HTTP Range, across mirrors), checks it and
    /// appends it as a snapshot on trial, then reboots. Without an answering mirror it retries
    /// with backoff, then exits 25 (run it again from cron or procd).
    Poll {
        /// A mirror's base URL (http://host[:port]/path, or https:// through --https-fetch),
        /// repeatable
        #[arg(long = "mirror", required = true, value_name = "URL")]
        mirrors: Vec<String>,
        /// The program that fetches https:// mirrors to stdout, with its arguments (the URL is
        /// appended) [default: uclient-fetch -T SECS -O -]
        #[arg(long, value_name = "CMD")]
        https_fetch: Option<String>,
        /// Try the mirrors in the order given (a preferred local one first), not a random one
        #[arg(long)]
        in_order: bool,
        /// The channel to follow
        #[arg(long, default_value = "stable", value_name = "NAME")]
        channel: String,
        #[command(flatten)]
        trust: TrustArgs,
        /// Where the unit keeps what it has taken (the last channel's publication time)
        #[arg(long, default_value = DEFAULT_FLEET_STATE, value_name = "DIR")]
        state: PathBuf,
        /// This unit's id for the rollout [default: the hostname]
        #[arg(long, value_name = "ID")]
        unit_id: Option<String>,
        /// The time to decide the rollout at, Unix seconds [default: now] (tests)
        #[arg(long, value_name = "UNIX")]
        now: Option<u64>,
        /// Rounds over the mirrors after the first when none answers
        #[arg(long, default_value_t = 3, value_name = "N")]
        retries: u32,
        /// First wait between rounds, in milliseconds (doubles each round, at most 5 min)
        #[arg(long, default_value_t = 2000, value_name = "MS")]
        backoff_ms: u64,
        /// Time bound of each request, in seconds: connect, each read, a whole reply's headers;
        /// a body may take this plus 1 s per KiB
        #[arg(long, default_value_t = 15, value_name = "SECS")]
        timeout: u64,
        /// Do not reboot after writing
        #[arg(long)]
        no_reboot: bool,
        /// Publish the unit's status to this MQTT broker (HOST[:PORT]) when the poll ends
        #[arg(long, value_name = "HOST[:PORT]")]
        mqtt: Option<String>,
        /// The topic prefix: the status goes to PREFIX/UNIT/state
        #[arg(long, default_value = "snapinit", value_name = "PREFIX")]
        topic_prefix: String,
        #[command(flatten)]
        login: LoginArgs,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Log in to the MQTT broker as this user
    #[arg(long, value_name = "NAME", requires = "mqtt_password_file")]
    mqtt_user: Option<String>,
    /// The file whose first line is the broker password (never on the command line)
    #[arg(long, value_name = "FILE", requires = "mqtt_user")]
    mqtt_password_file: Option<PathBuf>,
}

impl LoginArgs {
    fn login(&self) -> Result<Option<snapshot::fleet::mqtt::Login>, CliError> {
        match (&self.mqtt_user, &self.mqtt_password_file) {
            (Some(user), Some(file)) => super::read_login(user, file).map(Some),
            _ => Ok(None),
        }
    }
}

#[derive(Debug, Args)]
pub struct BrokerArgs {
    #[command(flatten)]
    login: LoginArgs,
    /// The topic prefix: a unit's status is PREFIX/UNIT/state
    #[arg(long, default_value = "snapinit", value_name = "PREFIX")]
    topic_prefix: String,
    /// Attempts after the first when the broker does not answer
    #[arg(long, default_value_t = 2, value_name = "N")]
    retries: u32,
    /// First wait between attempts, in milliseconds (doubles each time, at most 5 min)
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    backoff_ms: u64,
    /// Time bound of each exchange with the broker, in seconds (a collection of many
    /// messages: this plus 1 s per KiB)
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    timeout: u64,
}

impl BrokerArgs {
    fn mqtt<'a>(
        &'a self,
        broker: &'a str,
        login: Option<&'a snapshot::fleet::mqtt::Login>,
    ) -> super::MqttArgs<'a> {
        super::MqttArgs {
            broker,
            login,
            prefix: &self.topic_prefix,
            timeout: Duration::from_secs(self.timeout),
            retries: self.retries,
            backoff: Duration::from_millis(self.backoff_ms),
        }
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the versioned JSON document (apiVersion/kind, as docs/FLEET.md describes)
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    unit: UnitArgs,
}

#[derive(Debug, Args)]
pub struct UnitArgs {
    /// The state directory `fleet poll` and `health` keep
    #[arg(long, default_value = DEFAULT_FLEET_STATE, value_name = "DIR")]
    state: PathBuf,
    /// This unit's id [default: the hostname]
    #[arg(long, value_name = "ID")]
    unit_id: Option<String>,
    /// The channel the unit follows
    #[arg(long, default_value = "stable", value_name = "NAME")]
    channel: String,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unit".into())
}

#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Trusted public keys, one file per key named by its key number
    #[arg(long, default_value = super::DEFAULT_KEYS, value_name = "DIR")]
    keys: PathBuf,
    /// Valid signatures of distinct trusted keys required
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    min_sigs: u16,
    /// Largest payload taken, in bytes
    #[arg(long, default_value_t = super::DEFAULT_MAX_SIZE, value_name = "BYTES")]
    max_size: u64,
}

impl TrustArgs {
    fn trust(&self) -> super::Trust<'_> {
        super::Trust {
            keys: &self.keys,
            min_sigs: usize::from(self.min_sigs),
            max_size: self.max_size,
        }
    }
}

pub fn bundle(ctx: &Ctx, cmd: BundleCmd) -> Result<(), CliError> {
    match cmd {
        #[cfg(feature = "fleet-admin")]
        BundleCmd::Create {
            base,
            base_hash,
            upper,
            out,
            bundle_version,
            note,
            trial,
            no_compress,
        } => super::create(
            ctx,
            &super::CreateArgs {
                base: base.as_deref(),
                base_hash: base_hash.as_deref(),
                upper: &upper,
                out: &out,
                version: &bundle_version,
                note: &note,
                trial,
                gzip: !no_compress,
            },
        ),
        #[cfg(feature = "fleet-admin")]
        BundleCmd::Sign { key, target } => super::sign(&key, &target),
        BundleCmd::Verify { dir, trust } => {
            super::verify(ctx, &dir, &trust.trust(), ctx.spec.device.is_some())
        }
        #[cfg(feature = "fleet-admin")]
        BundleCmd::Keygen { prefix, comment } => super::keygen(&prefix, &comment),
        BundleCmd::Fingerprint { key } => super::fingerprint(&key),
        BundleCmd::Head => super::head(ctx),
        #[cfg(feature = "fleet-admin")]
        BundleCmd::Channel {
            root,
            channel,
            priority,
            published,
            expires_days,
            bundles,
        } => super::channel(&root, &channel, priority, published, expires_days, &bundles),
    }
}

pub fn fleet(ctx: &Ctx, cmd: FleetCmd) -> Result<(), CliError> {
    match cmd {
        FleetCmd::Apply {
            dir,
            trust,
            no_reboot,
        } => super::apply(ctx, &dir, &trust.trust(), !no_reboot),
        #[cfg(feature = "fleet-admin")]
        FleetCmd::Status {
            args,
            mqtt: Some(m),
            html,
            broker,
        } => {
            let login = broker.login.login()?;
            super::status_mqtt(&broker.mqtt(&m, login.as_ref()), args.json, html.as_deref())
        }
        FleetCmd::Status { args, .. } => super::status(
            ctx,
            &args.unit.state,
            &args.unit.unit_id.unwrap_or_else(hostname),
            &args.unit.channel,
            args.json,
        ),
        FleetCmd::Publish { unit, mqtt, broker } => {
            let login = broker.login.login()?;
            super::publish(
                ctx,
                &unit.state,
                &unit.unit_id.unwrap_or_else(hostname),
                &unit.channel,
                &broker.mqtt(&mqtt, login.as_ref()),
            )
        }
        #[cfg(feature = "fleet-admin")]
        FleetCmd::Report { files, json, html } => super::report(&files, json, html.as_deref()),
        FleetCmd::Poll {
            mirrors,
            https_fetch,
            in_order,
            channel,
            trust,
            state,
            unit_id,
            now,
            retries,
            backoff_ms,
            timeout,
            no_reboot,
            mqtt,
            topic_prefix,
            login,
        } => {
            let unit = unit_id.unwrap_or_else(hostname);
            let login = login.login()?;
            let broker = mqtt.as_deref().map(|b| super::MqttArgs {
                broker: b,
                login: login.as_ref(),
                prefix: &topic_prefix,
                timeout: Duration::from_secs(timeout),
                retries,
                backoff: Duration::from_millis(backoff_ms),
            });
            super::poll(
                ctx,
                &super::PollArgs {
                    mirrors: &mirrors,
                    channel: &channel,
                    state: &state,
                    unit: &unit,
                    now,
                    retries,
                    backoff: Duration::from_millis(backoff_ms),
                    timeout: Duration::from_secs(timeout),
                    https_fetch: https_fetch
                        .as_deref()
                        .map(|c| c.split_whitespace().map(String::from).collect())
                        .unwrap_or_default(),
                    in_order,
                },
                &trust.trust(),
                !no_reboot,
                broker.as_ref(),
            )
        }
    }
}
