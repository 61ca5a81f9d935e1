//! Group commit: threads that each need the same expensive, serialised step (take the
//! home lock and fsync a directory; lock and fsync the audit log) hand their job to a
//! [`Group`]; one of them, the leader, runs every job queued so far as one batch, and
//! each thread gets its own result back. A fleet of N pulls at --parallel P then pays
//! about N/P lock round trips and fsyncs instead of N, and the home lock no longer
//! serialises the fleet.
//!
//! Invariant: `submit` returns only after the batch holding its job has finished, so a
//! caller sees exactly the durability it would have had alone (its rename or record is
//! on disk when it returns). Batching changes who does the work and how often the disk
//! is flushed, never what is on disk when a caller is told "done".
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Whether grouping is on (it is by default). Off, every job runs alone, as its own
/// batch of one: for benchmarks that compare the two (`--no-group-commit`).
static ENABLED: AtomicBool = AtomicBool::new(true);

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

/// A queue of jobs `J` with results `R`.
pub struct Group<J, R> {
    state: Mutex<State<J, R>>,
    done: Condvar,
}

struct State<J, R> {
    next: u64,
    queue: Vec<(u64, J)>,
    results: HashMap<u64, R>,
    /// A leader is running a batch.
    busy: bool,
    /// Batches run and jobs in them (for tests and measurements).
    batches: u64,
    jobs: u64,
}

impl<J, R> Default for Group<J, R> {
    fn default() -> Self {
        Group {
            state: Mutex::new(State {
                next: 0,
                queue: Vec::new(),
                results: HashMap::new(),
                busy: false,
                batches: 0,
                jobs: 0,
            }),
            done: Condvar::new(),
        }
    }
}

impl<J, R> Group<J, R> {
    fn lock(&self) -> MutexGuard<'_, State<J, R>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` and returns its result. If no batch is running, this thread runs
    /// `run` on every queued job (its own among them); otherwise it waits for the
    /// running batch and, if its job was not in it, leads the next one. `run` must
    /// return one result per job, in order.
    pub fn submit(&self, job: J, run: impl FnOnce(Vec<J>) -> Vec<R>) -> R {
        if !enabled() {
            return run(vec![job]).pop().expect("one result per job");
        }
        let mut st = self.lock();
        let ticket = st.next;
        st.next += 1;
        st.queue.push((ticket, job));
        let mut run = Some(run);
        loop {
            if let Some(r) = st.results.remove(&ticket) {
                return r;
            }
            if st.busy {
                st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // No batch is running, so every earlier batch is finished: our job is still
            // queued, and we lead exactly once.
            st.busy = true;
            let (tickets, jobs): (Vec<u64>, Vec<J>) =
                std::mem::take(&mut st.queue).into_iter().unzip();
            drop(st);
            let n = jobs.len();
            let run = run.take().expect("a thread leads at most one batch");
            let results = run(jobs);
            assert_eq!(results.len(), n, "one result per job");
            st = self.lock();
            st.results.extend(tickets.into_iter().zip(results));
            st.busy = false;
            st.batches += 1;
            st.jobs += n as u64;
            self.done.notify_all();
        }
    }

    /// Batches run so far and the jobs they held.
    pub fn stats(&self) -> (u64, u64) {
        let st = self.lock();
        (st.batches, st.jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[test]
    fn every_job_gets_its_own_result_and_concurrent_jobs_share_batches() {
        let g: Arc<Group<u32, u32>> = Arc::new(Group::default());
        let running = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..32u32)
            .map(|i| {
                let (g, running) = (Arc::clone(&g), Arc::clone(&running));
                std::thread::spawn(move || {
                    g.submit(i, |jobs| {
                        // Never two batches at once.
                        assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0);
                        std::thread::sleep(Duration::from_millis(5));
                        running.fetch_sub(1, Ordering::SeqCst);
                        jobs.into_iter().map(|j| j * 10).collect()
                    })
                })
            })
            .collect();
        for (i, t) in threads.into_iter().enumerate() {
            assert_eq!(t.join().unwrap(), i as u32 * 10);
        }
        let (batches, jobs) = g.stats();
        assert_eq!(jobs, 32);
        assert!(
            batches < 32,
            "32 jobs submitted together ran in {batches} batches"
        );
    }
}
