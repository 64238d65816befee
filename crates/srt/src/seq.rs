//! 31-bit wrapping sequence numbers.

/// An SRT packet sequence number (31 bits, wrapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNo(u32);

impl SeqNo {
    pub const MAX: u32 = 0x7FFF_FFFF;

    pub fn new(v: u32) -> Self {
        SeqNo(v & Self::MAX)
    }

    pub fn value(self) -> u32 {
        self.0
    }

    pub fn add_n(self, n: u32) -> Self {
        SeqNo(self.0.wrapping_add(n) & Self::MAX)
    }

    pub fn next(self) -> Self {
        self.add_n(1)
    }

    pub fn prev(self) -> Self {
        SeqNo(self.0.wrapping_sub(1) & Self::MAX)
    }

    /// Signed distance `other - self` on the 31-bit circle.
    pub fn diff(self, other: SeqNo) -> i32 {
        let d = other.0.wrapping_sub(self.0) & Self::MAX;
        if d > Self::MAX / 2 {
            d as i32 - (Self::MAX as i32) - 1
        } else {
            d as i32
        }
    }

    /// `self` comes strictly before `other`.
    pub fn lt(self, other: SeqNo) -> bool {
        self.diff(other) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        let a = SeqNo::new(SeqNo::MAX);
        assert_eq!(a.next(), SeqNo::new(0));
        assert_eq!(a.diff(SeqNo::new(2)), 3);
        assert_eq!(SeqNo::new(2).diff(a), -3);
        assert!(a.lt(SeqNo::new(0)));
        assert_eq!(SeqNo::new(0).prev(), a);
    }
}
