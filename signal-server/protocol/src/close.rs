//! WebSocket close codes the server uses, and what each tells a client to do.

/// Normal closure: the client asked to leave, or the server acknowledged a clean close.
pub const NORMAL: u16 = 1000;
/// A text frame that is not valid UTF-8.
pub const INVALID_DATA: u16 = 1007;
/// Policy violation: banned address, flooding, too many connections, bad protocol version.
/// The client should not reconnect at once.
pub const POLICY: u16 = 1008;
/// A message too large to even read (well above the `too_large` limit).
pub const TOO_BIG: u16 = 1009;
/// The server is restarting: reconnect (with the resume token) after a short delay.
pub const SERVICE_RESTART: u16 = 1012;
/// Extension: another connection resumed this session; this one is obsolete.
pub const REPLACED: u16 = 4000;
