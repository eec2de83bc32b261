//! A doubling pause with a cap: the respawn loops wait longer after each quick crash, and
//! the start-up lock polls less often the longer it waits.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max, next: first }
    }

    /// The pause to take now; the next one is twice as long, up to the cap.
    pub fn pause(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    /// Start over from the first pause.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Is the next pause longer than the first (the crashes repeat)?
    pub fn is_repeating(&self) -> bool {
        self.next > self.first
    }

    /// A respawn loop's child died after running `ran`: the pause before starting the next
    /// one. A child that lived `quick` or longer was not crash-looping: no pause, and the
    /// backoff starts over.
    pub fn after_exit(&mut self, ran: Duration, quick: Duration) -> Duration {
        if ran < quick {
            self.pause()
        } else {
            self.reset();
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(350));
        assert!(!b.is_repeating());
        assert_eq!([b.pause(), b.pause(), b.pause(), b.pause()], [ms(100), ms(200), ms(350), ms(350)]);
        assert!(b.is_repeating());
        assert_eq!(b.after_exit(ms(5000), ms(2000)), Duration::ZERO);
        assert_eq!(b.after_exit(ms(10), ms(2000)), ms(100));
        assert_eq!(b.after_exit(ms(10), ms(2000)), ms(200));
    }
}
