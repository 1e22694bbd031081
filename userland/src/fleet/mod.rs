//! Fleet updates (docs/FLEET.md): signed bundles that carry one snapshot on top of a known chain
//! head, in OpenWrt's usign signature format, and the units' status over MQTT.

pub mod bundle;
pub mod channel;
pub mod deadline;
pub mod http;
pub mod mqtt;
pub mod sign;
