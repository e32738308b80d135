//! The gateway's limits, each a named constant enforced in [`crate::session`] and
//! [`crate::gateway`].

use std::time::Duration;

/// Largest websocket message (and frame) a device may send, in bytes. A larger one closes
/// the connection with code 1009.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Messages a connection may send per second, on average.
pub const RATE_PER_SEC: u32 = 20;

/// Messages a connection may send in a burst (a device emptying its offline queue).
pub const RATE_BURST: u32 = 200;

/// Messages over the rate limit after which the connection is closed (code 1008).
pub const RATE_STRIKES_BEFORE_CLOSE: u32 = 100;

/// Time between the gateway's websocket pings.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);

/// A connection that sent nothing (not even a pong) for this long is dead and closed. With
/// pings every [`PING_INTERVAL`], a dead connection is noticed at most
/// `IDLE_TIMEOUT + PING_INTERVAL` = 30 s after the last frame it sent.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Time a new connection has to send its `hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Time one write to a device may take before the device counts as too slow.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Deliveries queued for one connection. When a device reads so slowly that the queue fills,
/// the gateway closes the connection (code 1013); the device reconnects and resumes from its
/// last sequence number, so nothing is lost and no memory is held for it meanwhile.
pub const OUTBOUND_QUEUE: usize = 64;

/// Connections one gateway accepts at once; more wait for a free slot.
pub const MAX_CONNECTIONS: usize = 50_000;

/// Times a command is decided again after a concurrent append to the unit's stream.
pub const MAX_COMMAND_ATTEMPTS: usize = 8;
