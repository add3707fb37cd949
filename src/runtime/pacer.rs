//! When a shard's reactor starts its next round of reads (`runtime.batch_window_us`).
//!
//! At moderate load most of a shard's time goes to going to sleep and waking up again for a
//! round that finds two or three sockets ready. Starting the rounds at most once per window
//! instead lets the kernel queue what arrives meanwhile, and one round reads it all and writes
//! each subscriber once. That only holds for *open-loop* input (publishers on their own clocks):
//! clients that wait for the broker's answer before sending more (a QoS 1 publisher with a full
//! window, a request and its response) would be slowed to one exchange per window.
//!
//! So the pacer measures instead of guessing. It batches only after a round that found
//! [`BATCH_WINDOW_ENTER_SOCKETS`] ready, and only after it has measured the read rate without the
//! window; after a trial of a few windows it compares the read rate with the window against that.
//! If the window held the input back (the rate fell below [`KEPT_RATE`] of it: a closed loop), it
//! stops batching and does not try again for a back-off that doubles up to
//! [`COOLDOWN_MAX`]. While batching it re-measures without the window every [`REPROBE`], so a
//! load that turns into a closed loop is not held for long. Sans-io: the caller gives the time
//! and the shard's count of bytes read.

use std::time::{Duration, Instant};

use crate::limits::{BATCH_WINDOW_ENTER_SOCKETS, BATCH_WINDOW_STAY_SOCKETS};

/// Shortest span over which a read rate is measured (with the window: also at least
/// [`TRIAL_WINDOWS`] windows). Long enough that a paced load's rate varies by a few percent
/// (over 10 ms, a load generator's bursts made open-loop trials fail now and then at 20 k msg/s).
const SPAN: Duration = Duration::from_millis(20);
/// Windows in a trial of batching.
const TRIAL_WINDOWS: u32 = 8;
/// A rate measured longer ago than this is not compared with.
const RATE_FRESH: Duration = Duration::from_millis(50);
/// The share of the read rate without the window that batching must keep. A QoS 1 fan-in near
/// capacity, whose subscriber's window makes the delivery a closed loop, kept 85-88 % with the
/// window (and lost that much throughput) — below this.
const KEPT_RATE: f64 = 0.9;
/// First back-off after a trial that held the input back.
const COOLDOWN_MIN: Duration = Duration::from_millis(100);
/// Longest back-off (it doubles after each failed trial, and resets after a kept one).
const COOLDOWN_MAX: Duration = Duration::from_secs(2);
/// While batching, the rate without the window is measured again this often.
const REPROBE: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct Pacer {
    window: Duration,
    batching: bool,
    /// Start of the current measuring span, and the shard's bytes read at its start.
    span_start: Instant,
    span_base: u64,
    /// Read rate without the window (bytes per second) and when it was measured.
    plain: Option<(f64, Instant)>,
    /// No batching before this.
    cooldown_until: Instant,
    cooldown: Duration,
    batching_since: Instant,
}

impl Pacer {
    pub fn new(window: Duration, now: Instant) -> Pacer {
        Pacer {
            window,
            batching: false,
            span_start: now,
            span_base: 0,
            plain: None,
            cooldown_until: now,
            cooldown: COOLDOWN_MIN,
            batching_since: now,
        }
    }

    /// When the next round may start if it began at `round_start`: `None` = as soon as a socket
    /// is ready.
    pub fn next_round(&self, round_start: Instant) -> Option<Instant> {
        self.batching.then(|| round_start + self.window)
    }

    pub fn batching(&self) -> bool {
        self.batching
    }

    fn restart_span(&mut self, now: Instant, bytes: u64) {
        self.span_start = now;
        self.span_base = bytes;
    }

    /// After a round that served `sockets` ready sockets; `bytes` = everything the shard has
    /// read so far.
    pub fn after_round(&mut self, now: Instant, sockets: usize, bytes: u64) {
        if self.window.is_zero() {
            return;
        }
        let elapsed = now.saturating_duration_since(self.span_start);
        let rate = || (bytes - self.span_base) as f64 / elapsed.as_secs_f64();
        if !self.batching {
            if elapsed >= SPAN {
                self.plain = Some((rate(), now));
                self.restart_span(now, bytes);
            }
            let fresh = self
                .plain
                .is_some_and(|(_, at)| now.saturating_duration_since(at) <= RATE_FRESH);
            if sockets >= BATCH_WINDOW_ENTER_SOCKETS && fresh && now >= self.cooldown_until {
                self.batching = true;
                self.batching_since = now;
                self.restart_span(now, bytes);
            }
            return;
        }
        // No time measured, no evidence against the window.
        let kept = || {
            elapsed.is_zero()
                || self
                    .plain
                    .is_none_or(|(plain, _)| rate() >= KEPT_RATE * plain)
        };
        if sockets < BATCH_WINDOW_STAY_SOCKETS {
            // The load has gone, or a closed loop's round came out small: judged as a trial
            // (without that, a closed loop whose rounds are sometimes small would be held in
            // short episodes that never reach a trial's end).
            if !kept() {
                self.back_off(now);
            }
            self.stop(now, bytes);
            return;
        }
        if elapsed < SPAN.max(self.window * TRIAL_WINDOWS) {
            return;
        }
        if !kept() {
            // A closed loop: the window slowed the input down.
            self.back_off(now);
            self.stop(now, bytes);
            return;
        }
        self.cooldown = COOLDOWN_MIN;
        if now.saturating_duration_since(self.batching_since) >= REPROBE {
            // Measure the rate without the window again.
            self.stop(now, bytes);
            return;
        }
        self.restart_span(now, bytes);
    }

    /// Ends batching; the next needs a fresh measure of the rate without the window.
    fn stop(&mut self, now: Instant, bytes: u64) {
        self.batching = false;
        self.plain = None;
        self.restart_span(now, bytes);
    }

    /// No batching for a while (doubling each time, up to [`COOLDOWN_MAX`]).
    fn back_off(&mut self, now: Instant) {
        self.cooldown_until = now + self.cooldown;
        self.cooldown = (self.cooldown * 2).min(COOLDOWN_MAX);
    }

    /// A poll found nothing ready: the shard sleeps until a socket is.
    pub fn idle(&mut self) {
        if self.batching {
            self.batching = false;
            self.plain = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_micros(500);

    /// What clients send.
    #[derive(Clone, Copy)]
    enum Input {
        /// On their own clocks: bytes per millisecond, however long a round waited.
        Open(u64),
        /// Each waits for the broker's answer: the same bytes every round, however long it waited.
        Closed(u64),
    }

    /// Drives the pacer's rounds for `total` (a round every 50 µs when not batching).
    struct Run {
        now: Instant,
        /// Time spent waiting for the window.
        batched: Duration,
        /// Times batching ended.
        ends: u32,
    }

    fn rounds(
        p: &mut Pacer,
        now: Instant,
        bytes: &mut u64,
        total: Duration,
        sockets: usize,
        input: Input,
    ) -> Run {
        let mut run = Run {
            now,
            batched: Duration::ZERO,
            ends: 0,
        };
        let end = now + total;
        let mut step = Duration::from_micros(50);
        while run.now < end {
            *bytes += match input {
                Input::Open(per_ms) => per_ms * step.as_micros() as u64 / 1_000,
                Input::Closed(per_round) => per_round,
            };
            let was = p.batching();
            p.after_round(run.now, sockets, *bytes);
            if was && !p.batching() {
                run.ends += 1;
            }
            step = p
                .next_round(run.now)
                .map_or(Duration::from_micros(50), |at| at - run.now);
            if p.batching() {
                run.batched += step;
            }
            run.now += step;
        }
        run
    }

    #[test]
    fn open_loop_input_is_batched_and_stays_batched() {
        let t0 = Instant::now();
        let mut p = Pacer::new(W, t0);
        let mut bytes = 0;
        // 2 MB/s.
        let input = Input::Open(2_000);
        let run = rounds(&mut p, t0, &mut bytes, Duration::from_millis(25), 4, input);
        assert!(
            p.batching(),
            "a measured rate and 4 sockets start the window"
        );
        let run = rounds(
            &mut p,
            run.now,
            &mut bytes,
            Duration::from_millis(20),
            20,
            input,
        );
        assert!(p.batching(), "the trial kept the rate");
        // Over a second: re-measured without the window every REPROBE, batching the rest.
        let run = rounds(
            &mut p,
            run.now,
            &mut bytes,
            Duration::from_secs(1),
            20,
            input,
        );
        assert!(
            (1..=3).contains(&run.ends),
            "{} re-measures in 1 s",
            run.ends
        );
        assert!(
            run.batched > Duration::from_millis(900),
            "batched {:?} of 1 s",
            run.batched
        );
    }

    #[test]
    fn a_closed_loop_is_not_held_by_the_window() {
        let t0 = Instant::now();
        let mut p = Pacer::new(W, t0);
        let mut bytes = 0;
        let input = Input::Closed(100);
        let run = rounds(&mut p, t0, &mut bytes, Duration::from_millis(25), 5, input);
        assert!(p.batching());
        // Each round gets the same 100 bytes however long it waited, so the window cuts the
        // rate tenfold; the trial ends batching.
        let run = rounds(
            &mut p,
            run.now,
            &mut bytes,
            Duration::from_millis(25),
            5,
            input,
        );
        assert!(!p.batching(), "the trial saw the rate fall");
        // Not tried again during the back-off (100 ms)...
        let run = rounds(
            &mut p,
            run.now,
            &mut bytes,
            Duration::from_millis(90),
            5,
            input,
        );
        assert_eq!(run.batched, Duration::ZERO);
        // ...and each failed trial doubles it: over 2 s, a few 20 ms trials.
        let run = rounds(
            &mut p,
            run.now,
            &mut bytes,
            Duration::from_secs(2),
            5,
            input,
        );
        assert!(
            run.batched < Duration::from_millis(120),
            "held by the window for {:?} of 2 s",
            run.batched
        );
        assert!((1..=5).contains(&run.ends), "{} trials", run.ends);
    }

    #[test]
    fn few_sockets_or_no_window_never_batch() {
        let t0 = Instant::now();
        let mut bytes = 0;
        let mut p = Pacer::new(W, t0);
        rounds(
            &mut p,
            t0,
            &mut bytes,
            Duration::from_millis(50),
            3,
            Input::Open(2_000),
        );
        assert!(!p.batching(), "3 sockets a round");
        let mut p = Pacer::new(Duration::ZERO, t0);
        rounds(
            &mut p,
            t0,
            &mut bytes,
            Duration::from_millis(50),
            50,
            Input::Open(2_000),
        );
        assert!(!p.batching(), "window 0");
        assert_eq!(p.next_round(t0), None);
    }

    #[test]
    fn batching_ends_when_the_load_goes() {
        let t0 = Instant::now();
        let mut p = Pacer::new(W, t0);
        let mut bytes = 0;
        let run = rounds(
            &mut p,
            t0,
            &mut bytes,
            Duration::from_millis(25),
            4,
            Input::Open(2_000),
        );
        assert!(p.batching());
        // A round of one socket, with little read since batching began: the load has gone (or
        // a closed loop shows), which counts as a failed trial.
        bytes += 10;
        p.after_round(run.now, 1, bytes);
        assert!(!p.batching(), "a round of one socket");
        let run = rounds(
            &mut p,
            run.now,
            &mut bytes,
            Duration::from_millis(50),
            4,
            Input::Open(2_000),
        );
        assert_eq!(run.batched, Duration::ZERO, "backed off");
        let run = rounds(
            &mut p,
            run.now,
            &mut bytes,
            Duration::from_millis(120),
            4,
            Input::Open(2_000),
        );
        assert!(p.batching(), "the load came back: {p:?}");
        p.idle();
        assert!(!p.batching(), "nothing ready");
        assert_eq!(p.next_round(run.now), None);
    }
}
