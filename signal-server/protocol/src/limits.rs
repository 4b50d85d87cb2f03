//! Limits every party can rely on. A message breaking one of them is refused with a clear
//! error; none of them is a silent truncation.

/// Largest accepted text frame, in bytes (`error too_large` above it).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most interests a client may declare in `hello`.
pub const MAX_INTERESTS: usize = 16;
/// Longest interest tag, in characters, after normalisation.
pub const MAX_INTEREST_CHARS: usize = 32;
/// Longest `report.reason` kept, in characters (longer reasons are cut, never refused).
pub const MAX_REPORT_REASON_CHARS: usize = 200;
/// Longest resume token accepted in `hello` (tokens the server hands out are shorter).
pub const MAX_RESUME_TOKEN_CHARS: usize = 128;
/// Longest community name (`welcome.name`, the server's `--name`), in characters.
pub const MAX_COMMUNITY_NAME_CHARS: usize = 80;
/// Largest community rules text (`welcome.rules`, the server's `--rules-file`), in bytes: a
/// page or two of plain text, well inside one message.
pub const MAX_RULES_BYTES: usize = 16 * 1024;
