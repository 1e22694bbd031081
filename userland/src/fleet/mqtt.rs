//! Unit status over MQTT 3.1.1, blocking, on a plain `std::net::TcpStream`: no async runtime.
//! The packets are encoded and decoded by the `mqtt-protocol` crate (`Encodable`/`Decodable`
//! over `std::io::Read`/`Write`); this module only sequences them.
//!
//! A unit publishes its status document as one **retained** message (QoS 1, waited for its
//! PUBACK) under `<prefix>/<unit>/state`. A reader subscribes to `<prefix>/+/state`: the broker
//! sends every retained message at once. MQTT 3.1.1 has no "end of retained messages" mark, so
//! the reader subscribes to a topic of its own as well and publishes one message to it after
//! the SUBSCRIBE: the broker handles a client's packets in order, so that message comes back
//! after the retained ones of the subscription before it.

use super::deadline::{Deadline, Paced, MIN_RATE};
use mqtt::control::variable_header::ConnectReturnCode;
use mqtt::packet::{
    ConnectPacket, DisconnectPacket, PublishPacket, QoSWithPacketIdentifier, SubscribePacket,
    VariablePacket,
};
use mqtt::{Decodable, Encodable, QualityOfService, TopicFilter, TopicName};
use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The port when `HOST` names none.
pub const DEFAULT_PORT: u16 = 1883;
/// The largest packet taken from a broker (a status document is a few KiB).
pub const MAX_PACKET: u32 = 256 * 1024;
/// The most retained messages one collection takes (units of a fleet, one topic each).
pub const MAX_RETAINED: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("{0:?} is not a broker address (HOST, HOST:PORT or [IPv6]:PORT)")]
    BadAddress(String),
    #[error("MQTT broker {broker}: {source}")]
    Net {
        broker: String,
        #[source]
        source: std::io::Error,
    },
    #[error("MQTT broker {broker} refused the connection: {code:?}")]
    Refused {
        broker: String,
        code: ConnectReturnCode,
    },
    #[error("MQTT broker {broker}: {detail}")]
    Protocol { broker: String, detail: String },
    #[error("{topic:?} is not a usable MQTT topic: {detail}")]
    BadTopic { topic: String, detail: String },
}

/// `HOST[:PORT]` (an IPv6 address in brackets when it has a port).
pub fn parse_broker(addr: &str) -> Result<(String, u16), MqttError> {
    let bad = || MqttError::BadAddress(addr.to_string());
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').ok_or_else(bad)?;
        match tail.strip_prefix(':') {
            Some(p) => (h, p.parse().map_err(|_| bad())?),
            None if tail.is_empty() => (h, DEFAULT_PORT),
            None => return Err(bad()),
        }
    } else {
        match addr.split_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (addr, DEFAULT_PORT),
        }
    };
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// The longest unit id: its client id `snapinit-<unit>` must fit an MQTT string.
pub const MAX_UNIT_ID: usize = u16::MAX as usize - "snapinit-".len();

/// The topic a unit's status goes to: `<prefix>/<unit>/state`. The unit id must be one topic
/// level (no `/`, `+`, `#`).
pub fn state_topic(prefix: &str, unit: &str) -> Result<String, MqttError> {
    if unit.is_empty() || unit.contains(['/', '+', '#', '\0']) {
        return Err(MqttError::BadTopic {
            topic: unit.to_string(),
            detail: "a unit id must be one non-empty topic level (no /, + or #)".into(),
        });
    }
    // MQTT strings (the topics, the client id `snapinit-<unit>`) have 16-bit lengths: the
    // encoder asserts on a longer one (a panic, an abort in release) rather than failing.
    let topic = format!("{prefix}/{unit}/health");
    if topic.len() > usize::from(u16::MAX) || unit.len() > MAX_UNIT_ID {
        return Err(MqttError::BadTopic {
            topic: unit.to_string(),
            detail: format!(
                "a unit id must be at most {MAX_UNIT_ID} bytes, and its topics at most 65535"
            ),
        });
    }
    Ok(format!("{prefix}/{unit}/state"))
}

/// The topic a unit's last health verdict goes to: `<prefix>/<unit>/health`.
pub fn health_topic(prefix: &str, unit: &str) -> Result<String, MqttError> {
    state_topic(prefix, unit)?;
    Ok(format!("{prefix}/{unit}/health"))
}

/// One connection to a broker.
/// A user name and password for the broker's CONNECT (MQTT 3.1.1 sends them in the clear:
/// a broker on the mesh, or TLS terminated at the gateway, as docs/FLEET.md says).
#[derive(Clone)]
pub struct Login {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, even in a debug print.
        write!(f, "Login({:?})", self.user)
    }
}

pub struct Session {
    stream: TcpStream,
    broker: String,
    next_id: u16,
    timeout: Duration,
    /// What the exchange under way must finish by, and what it has read so far: each step
    /// (the CONNACK, a PUBACK, a collection) gets one, whatever the broker sends meanwhile.
    deadline: Deadline,
    got: u64,
}

impl Session {
    /// Connects (clean session, logging in when `login` is given) and waits for the broker's
    /// CONNACK.
    pub fn connect(
        addr: &str,
        client_id: &str,
        login: Option<&Login>,
        timeout: Duration,
    ) -> Result<Self, MqttError> {
        let (host, port) = parse_broker(addr)?;
        let broker = addr.to_string();
        let net = |source| MqttError::Net {
            broker: broker.clone(),
            source,
        };
        let addrs = (host.as_str(), port).to_socket_addrs().map_err(net)?;
        let stream = super::deadline::connect(addrs, timeout).map_err(net)?;
        stream.set_write_timeout(Some(timeout)).map_err(net)?;
        let mut s = Session {
            stream,
            broker,
            next_id: 1,
            timeout,
            deadline: Deadline::within(timeout),
            got: 0,
        };
        let mut c = ConnectPacket::new(client_id);
        c.set_clean_session(true);
        if let Some(l) = login {
            c.set_user_name(Some(l.user.clone()));
            c.set_password(Some(l.password.clone()));
        }
        c.set_keep_alive(u16::try_from(timeout.as_secs().saturating_mul(2)).unwrap_or(u16::MAX));
        s.send(&c)?;
        match s.recv()? {
            VariablePacket::ConnackPacket(ack) => match ack.connect_return_code() {
                ConnectReturnCode::ConnectionAccepted => Ok(s),
                code => Err(MqttError::Refused {
                    broker: s.broker.clone(),
                    code,
                }),
            },
            other => Err(s.protocol(format!("expected CONNACK, got {}", name(&other)))),
        }
    }

    fn protocol(&self, detail: String) -> MqttError {
        MqttError::Protocol {
            broker: self.broker.clone(),
            detail,
        }
    }

    fn net(&self, source: std::io::Error) -> MqttError {
        MqttError::Net {
            broker: self.broker.clone(),
            source,
        }
    }

    fn send<P: Encodable>(&mut self, p: &P) -> Result<(), MqttError> {
        let mut buf = Vec::with_capacity(p.encoded_length() as usize);
        p.encode(&mut buf).map_err(|e| self.net(e))?;
        self.stream.write_all(&buf).map_err(|e| self.net(e))
    }

    /// Starts an exchange: it must be over within the timeout, or for a collection of many
    /// messages, at [`MIN_RATE`] after it.
    fn start(&mut self, deadline: Deadline) {
        self.deadline = deadline;
        self.got = 0;
    }

    /// Reads one packet under the exchange's deadline: the fixed header, then at most
    /// [`MAX_PACKET`] bytes of the rest.
    fn recv(&mut self) -> Result<VariablePacket, MqttError> {
        let mut r = Paced {
            stream: &self.stream,
            deadline: self.deadline,
            got: self.got,
            per_read: self.timeout,
        };
        let header = mqtt::control::FixedHeader::decode(&mut r).map_err(|e| match e {
            mqtt::control::fixed_header::FixedHeaderError::IoError(io) => self.net(io),
            e => self.protocol(e.to_string()),
        })?;
        if header.remaining_length > MAX_PACKET {
            return Err(self.protocol(format!(
                "a packet of {} bytes (at most {MAX_PACKET} taken)",
                header.remaining_length
            )));
        }
        let mut body = vec![0u8; header.remaining_length as usize];
        let read = r.read_exact(&mut body);
        self.got = r.got;
        read.map_err(|e| self.net(e))?;
        VariablePacket::decode_with(&mut Cursor::new(body), Some(header))
            .map_err(|e| self.protocol(e.to_string()))
    }

    fn packet_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Publishes `payload` under `topic`, retained, QoS 1, and waits for the broker's PUBACK:
    /// when this returns, the broker holds the message.
    pub fn publish_retained(&mut self, topic: &str, payload: &[u8]) -> Result<(), MqttError> {
        let tname = TopicName::new(topic).map_err(|e| MqttError::BadTopic {
            topic: topic.to_string(),
            detail: e.to_string(),
        })?;
        let id = self.packet_id();
        let mut p = PublishPacket::new(tname, QoSWithPacketIdentifier::Level1(id), payload);
        p.set_retain(true);
        self.start(Deadline::within(self.timeout));
        self.send(&p)?;
        loop {
            match self.recv()? {
                VariablePacket::PubackPacket(a) if a.packet_identifier() == id => return Ok(()),
                // Anything else (a stray PINGRESP) is not the answer; keep reading.
                VariablePacket::PubackPacket(_) | VariablePacket::PingrespPacket(_) => {}
                other => {
                    return Err(self.protocol(format!("expected PUBACK, got {}", name(&other))))
                }
            }
        }
    }

    /// Every retained message under `filter` (a topic filter, wildcards allowed), newest per
    /// topic; messages with an empty payload (a deleted retained message) are left out.
    /// `marker` is a topic this client alone uses: its message ends the collection.
    pub fn collect_retained(
        &mut self,
        filter: &str,
        marker: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, MqttError> {
        let topic_err = |t: &str, e: String| MqttError::BadTopic {
            topic: t.to_string(),
            detail: e,
        };
        let f = TopicFilter::new(filter).map_err(|e| topic_err(filter, e.to_string()))?;
        let m = TopicFilter::new(marker).map_err(|e| topic_err(marker, e.to_string()))?;
        let mname = TopicName::new(marker).map_err(|e| topic_err(marker, e.to_string()))?;
        let id = self.packet_id();
        self.start(Deadline::paced(self.timeout, MIN_RATE));
        self.send(&SubscribePacket::new(
            id,
            vec![(f, QualityOfService::Level0), (m, QualityOfService::Level0)],
        ))?;
        let mut out = BTreeMap::new();
        let mut subscribed = false;
        let mut marker_sent = false;
        // Every packet counts towards the bound, not only a new topic: the deadline moves on
        // with each KiB that arrives, so a broker sending one topic again and again (or
        // PINGRESPs, or deletions) faster than the floor rate would hold the reader for ever.
        // Besides the messages: the SUBACK and the marker.
        let mut packets = 0usize;
        loop {
            if subscribed && !marker_sent {
                self.send(&PublishPacket::new(
                    mname.clone(),
                    QoSWithPacketIdentifier::Level0,
                    b"end".to_vec(),
                ))?;
                marker_sent = true;
            }
            let packet = match self.recv() {
                // A broker that drops the marker (an ACL that forbids this client to publish
                // to it) leaves the reader waiting: say so rather than "timed out".
                Err(MqttError::Net { source, .. })
                    if marker_sent
                        && matches!(
                            source.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                {
                    return Err(self.protocol(format!(
                        "{} retained message(s) read, but the end marker published to {marker:?} never came back (may this client publish and subscribe there?)",
                        out.len()
                    )));
                }
                r => r?,
            };
            packets += 1;
            if packets > MAX_RETAINED + 2 {
                return Err(self.protocol(format!(
                    "more than {MAX_RETAINED} messages under {filter:?} without the end marker"
                )));
            }
            match packet {
                VariablePacket::SubackPacket(a) if a.packet_identifier() == id => {
                    use mqtt::packet::suback::SubscribeReturnCode;
                    if a.subscribes().contains(&SubscribeReturnCode::Failure) {
                        return Err(self.protocol(format!(
                            "the broker refused the subscription to {filter:?} (not authorized?)"
                        )));
                    }
                    subscribed = true;
                }
                VariablePacket::PublishPacket(p) if p.topic_name() == marker => {
                    if marker_sent {
                        return Ok(out);
                    }
                }
                VariablePacket::PublishPacket(p) => {
                    if p.payload().is_empty() {
                        out.remove(p.topic_name());
                    } else if out.len() >= MAX_RETAINED && !out.contains_key(p.topic_name()) {
                        return Err(self.protocol(format!(
                            "more than {MAX_RETAINED} retained messages under {filter:?}"
                        )));
                    } else {
                        out.insert(p.topic_name().to_string(), p.payload().to_vec());
                    }
                }
                VariablePacket::PingrespPacket(_) => {}
                other => {
                    return Err(self.protocol(format!(
                        "unexpected {} while reading retained messages",
                        name(&other)
                    )))
                }
            }
        }
    }

    /// Says goodbye (DISCONNECT: the broker drops no will, there is none) and closes.
    pub fn disconnect(mut self) {
        let _ = self.send(&DisconnectPacket::new());
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

fn name(p: &VariablePacket) -> &'static str {
    match p {
        VariablePacket::ConnectPacket(_) => "CONNECT",
        VariablePacket::ConnackPacket(_) => "CONNACK",
        VariablePacket::PublishPacket(_) => "PUBLISH",
        VariablePacket::PubackPacket(_) => "PUBACK",
        VariablePacket::PubrecPacket(_) => "PUBREC",
        VariablePacket::PubrelPacket(_) => "PUBREL",
        VariablePacket::PubcompPacket(_) => "PUBCOMP",
        VariablePacket::PingreqPacket(_) => "PINGREQ",
        VariablePacket::PingrespPacket(_) => "PINGRESP",
        VariablePacket::SubscribePacket(_) => "SUBSCRIBE",
        VariablePacket::SubackPacket(_) => "SUBACK",
        VariablePacket::UnsubscribePacket(_) => "UNSUBSCRIBE",
        VariablePacket::UnsubackPacket(_) => "UNSUBACK",
        VariablePacket::DisconnectPacket(_) => "DISCONNECT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses_and_topics() {
        assert_eq!(
            parse_broker("10.0.0.1").expect("addr"),
            ("10.0.0.1".into(), 1883)
        );
        assert_eq!(
            parse_broker("broker:8883").expect("addr"),
            ("broker".into(), 8883)
        );
        assert_eq!(parse_broker("[::1]:99").expect("addr"), ("::1".into(), 99));
        assert_eq!(parse_broker("[::1]").expect("addr"), ("::1".into(), 1883));
        for bad in ["", ":1", "h:x", "h:0", "[::1", "[::1]x"] {
            assert!(parse_broker(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            state_topic("snapinit", "unit-01").expect("topic"),
            "snapinit/unit-01/state"
        );
        for bad in ["", "a/b", "a+", "#"] {
            assert!(state_topic("snapinit", bad).is_err(), "{bad:?}");
        }
    }
}
