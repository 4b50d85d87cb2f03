//! A tiny seeded generator for the randomised tests of the media code (xorshift64): the same
//! seed gives the same network damage on every run.

/// Returns a function giving numbers below its argument, from `seed`.
pub(crate) fn xorshift(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).max(1);
    move |range: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % range
    }
}
