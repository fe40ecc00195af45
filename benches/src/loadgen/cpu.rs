//! The load generator's own CPU time over a run, so that a result says
//! whether the client, not the server, was the limit: user + system time of
//! this process (every thread) from `getrusage(RUSAGE_SELF)`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// CPU time a process has used so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTimes {
    /// This process's CPU time so far (zero if the kernel refuses, which it
    /// does not for `RUSAGE_SELF`).
    pub fn of_this_process() -> CpuTimes {
        // SAFETY: getrusage writes one `rusage` into the zeroed value we own.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
                return CpuTimes::default();
            }
            usage
        };
        let of = |t: libc::timeval| {
            Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
                + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
        };
        CpuTimes {
            user: of(usage.ru_utime),
            system: of(usage.ru_stime),
        }
    }

    /// The time used since `earlier`.
    pub fn since(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// The client's CPU over the measured window of a run, as the summary shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClientCpu {
    pub user_secs: f64,
    pub system_secs: f64,
    /// user + system.
    pub cpu_secs: f64,
    /// cpu_secs / the run's elapsed time: 1.0 is one core kept busy.
    pub cores: f64,
    /// cpu_secs per successful op, in microseconds (0 without ops).
    pub us_per_op: f64,
    /// Processes whose CPU this sums (the tool, plus its watcher processes).
    pub processes: usize,
}

impl ClientCpu {
    /// `used` by `processes` processes over `elapsed`, in which `ops` ops succeeded.
    pub fn new(used: CpuTimes, processes: usize, elapsed: Duration, ops: u64) -> ClientCpu {
        let cpu_secs = (used.user + used.system).as_secs_f64();
        ClientCpu {
            user_secs: used.user.as_secs_f64(),
            system_secs: used.system.as_secs_f64(),
            cpu_secs,
            cores: cpu_secs / elapsed.as_secs_f64().max(1e-9),
            us_per_op: if ops == 0 {
                0.0
            } else {
                cpu_secs / ops as f64 * 1e6
            },
            processes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_shows_as_cpu_time() {
        let before = CpuTimes::of_this_process();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let used = CpuTimes::of_this_process().since(before);
        assert!(
            used.user + used.system >= Duration::from_millis(20),
            "{used:?}"
        );
    }

    #[test]
    fn cores_and_cost_per_op() {
        let used = CpuTimes {
            user: Duration::from_millis(1500),
            system: Duration::from_millis(500),
        };
        let cpu = ClientCpu::new(used, 1, Duration::from_secs(4), 1000);
        assert!((cpu.cpu_secs - 2.0).abs() < 1e-9);
        assert!((cpu.cores - 0.5).abs() < 1e-9);
        assert!((cpu.us_per_op - 2000.0).abs() < 1e-6);
        assert_eq!(
            ClientCpu::new(used, 1, Duration::from_secs(1), 0).us_per_op,
            0.0
        );
    }
}
