//! Safe extraction of tar archives (placeholder; see issue 3).
