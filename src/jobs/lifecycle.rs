//! The one table that decides every user command on a job.
//!
//! Phase changes made by the service itself (planning finished, copy finished, all tasks
//! stopped) live in the engine. This table only decides whether a user may do this now, and
//! which state follows.

use serde::{Deserialize, Serialize};

use super::model::Mode;

/// A job's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum JobState {
    Queued,
    Planning,
    Copying,
    /// Comparing the target with the source, chunk by chunk: after an offline job's copy, as
    /// the last step of an online job's cutover (its change streams have ended), or on request.
    Verifying,
    Replicating,
    CuttingOver,
    Completed,
    Pausing,
    Paused,
    Cancelling,
    Cancelled,
    Failed,
    /// Verification found differences or could not read a chunk; the report lists them.
    /// `resume` copies the differing chunks again (an online job from `cuttingOver`, without
    /// starting its ended change streams again) and verifies once more.
    VerificationFailed,
}

impl JobState {
    pub const ALL: [JobState; 13] = [
        JobState::Queued,
        JobState::Planning,
        JobState::Copying,
        JobState::Verifying,
        JobState::Replicating,
        JobState::CuttingOver,
        JobState::Completed,
        JobState::Pausing,
        JobState::Paused,
        JobState::Cancelling,
        JobState::Cancelled,
        JobState::Failed,
        JobState::VerificationFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Planning => "planning",
            JobState::Copying => "copying",
            JobState::Verifying => "verifying",
            JobState::Replicating => "replicating",
            JobState::CuttingOver => "cuttingOver",
            JobState::Completed => "completed",
            JobState::Pausing => "pausing",
            JobState::Paused => "paused",
            JobState::Cancelling => "cancelling",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
            JobState::VerificationFailed => "verificationFailed",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// States in which the service schedules new work for the job.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobState::Queued
                | JobState::Planning
                | JobState::Copying
                | JobState::Verifying
                | JobState::Replicating
                | JobState::CuttingOver
        )
    }

    /// States no command leaves.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Completed | JobState::Cancelled)
    }
}

/// A command a user sends to a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Command {
    Pause,
    Resume,
    Cancel,
    Cutover,
    /// Compare the target with the source again.
    Verify,
    /// Copy one collection of an online job again, after its replication failed or stopped.
    Recopy,
}

impl Command {
    pub const ALL: [Command; 6] = [
        Command::Pause,
        Command::Resume,
        Command::Cancel,
        Command::Cutover,
        Command::Verify,
        Command::Recopy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Cancel => "cancel",
            Command::Cutover => "cutover",
            Command::Verify => "verify",
            Command::Recopy => "recopy",
        }
    }

    pub fn parse(text: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// The parts of a job the table looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    pub state: JobState,
    pub mode: Mode,
    /// The active state a paused or failed job returns to on `resume`.
    pub resume_to: Option<JobState>,
    /// Whether every collection finished its initial copy (cutover and verify need it).
    pub initial_copy_done: bool,
    /// Whether a verification run is preparing or running.
    pub verification_running: bool,
}

/// The reason a command is not allowed now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
}

/// Decides the state that follows `command`, or why it is not allowed.
pub fn transition(job: Lifecycle, command: Command) -> Result<Lifecycle, Rejection> {
    use JobState::*;
    let reject = |reason: String| Err(Rejection { reason });
    let next = |state: JobState, resume_to: Option<JobState>| {
        Ok(Lifecycle {
            state,
            resume_to,
            ..job
        })
    };

    match (command, job.state) {
        (Command::Verify, _) => verify(job),
        (_, Completed | Cancelled) => {
            reject(format!("the job is {}, which is final", job.state.as_str()))
        }

        (Command::Pause, Queued | Planning | Copying | Verifying | Replicating | CuttingOver) => {
            next(Pausing, Some(job.state))
        }
        (Command::Pause, Pausing | Paused) => reject("the job is already paused".into()),
        (Command::Pause, Cancelling | Failed | VerificationFailed) => {
            reject(format!("a {} job cannot be paused", job.state.as_str()))
        }

        (Command::Resume, Pausing | Paused | Failed | VerificationFailed) => match job.resume_to {
            Some(target) if target.is_active() => next(target, None),
            _ => reject("the job has no phase to resume; create a new job".into()),
        },
        (Command::Resume, Cancelling) => reject("a cancelled job cannot be resumed".into()),
        (Command::Resume, _) => reject("the job is not paused or failed".into()),

        (Command::Cancel, Cancelling) => reject("the job is already being cancelled".into()),
        (Command::Cancel, _) => next(Cancelling, None),

        (Command::Recopy, _) if job.mode == Mode::Offline => reject(
            "re-copying one collection applies only to online jobs; create a new offline job instead"
                .into(),
        ),
        (Command::Recopy, Copying | Replicating) => next(Copying, None),
        (Command::Recopy, VerificationFailed) => reject(
            "recopy is not available after cutover, because the change streams ended; resume \
             the job to copy the differing chunks again from the source and verify again"
                .into(),
        ),
        (Command::Recopy, _) => reject(format!(
            "a collection can be re-copied while the job is copying or replicating, not while it is {}",
            job.state.as_str()
        )),

        (Command::Cutover, _) if job.mode == Mode::Offline => {
            reject("cutover applies only to online jobs; an offline job completes by itself".into())
        }
        (Command::Cutover, CuttingOver) => reject("cutover is already in progress".into()),
        (Command::Cutover, Replicating) if job.initial_copy_done => next(CuttingOver, None),
        (Command::Cutover, Queued | Planning | Copying | Replicating) => reject(
            "cutover is allowed once the initial copy of every collection has finished".into(),
        ),
        (Command::Cutover, Pausing | Paused) => {
            reject("the job is paused; resume it before cutover".into())
        }
        (Command::Cutover, Verifying | Cancelling | Failed | VerificationFailed) => {
            reject(format!("a {} job cannot be cut over", job.state.as_str()))
        }
    }
}

/// Decides `verify`: a completed or failed verification starts again, and an online job that
/// is replicating verifies beside its change streams without leaving `replicating`.
fn verify(job: Lifecycle) -> Result<Lifecycle, Rejection> {
    use JobState::*;
    let reject = |reason: String| Err(Rejection { reason });
    match job.state {
        Pausing | Paused => reject("the job is paused; resume it before verifying".into()),
        Cancelling | Cancelled | Failed => {
            reject(format!("a {} job cannot be verified", job.state.as_str()))
        }
        CuttingOver => reject("cutover verifies the target itself as its last step".into()),
        _ if job.verification_running => reject("a verification is already running".into()),
        Queued | Planning | Copying => reject(
            "verification is allowed once the initial copy of every collection has finished".into(),
        ),
        _ if !job.initial_copy_done => reject(
            "verification is allowed once the initial copy of every collection has finished".into(),
        ),
        Replicating => Ok(job),
        Verifying | Completed | VerificationFailed => Ok(Lifecycle {
            state: Verifying,
            resume_to: None,
            ..job
        }),
    }
}

/// Returns the commands `transition` accepts for this job now.
pub fn allowed_commands(job: Lifecycle) -> Vec<Command> {
    Command::ALL
        .into_iter()
        .filter(|c| transition(job, *c).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;

    fn job(state: JobState, mode: Mode) -> Lifecycle {
        Lifecycle {
            state,
            mode,
            resume_to: None,
            initial_copy_done: false,
            verification_running: false,
        }
    }

    /// Returns the expected result of every (state, command) pair for a job that remembers
    /// `Copying` as its resume target. With `online_copied` the job is online and its initial
    /// copy finished; without it the job is offline and still copying, so it may neither verify
    /// nor cut over.
    fn expected(state: JobState, command: Command, online_copied: bool) -> Option<JobState> {
        match (command, state) {
            (Command::Verify | Command::Cutover | Command::Recopy, _) if !online_copied => None,
            (Command::Verify, Replicating) => Some(Replicating),
            (Command::Verify, Verifying | Completed | VerificationFailed) => Some(Verifying),
            (Command::Verify, _) => None,
            (_, Completed | Cancelled) => None,
            (
                Command::Pause,
                Queued | Planning | Copying | Verifying | Replicating | CuttingOver,
            ) => Some(Pausing),
            (Command::Pause, _) => None,
            (Command::Resume, Pausing | Paused | Failed | VerificationFailed) => Some(Copying),
            (Command::Resume, _) => None,
            (Command::Cancel, Cancelling) => None,
            (Command::Cancel, _) => Some(Cancelling),
            (Command::Cutover, Replicating) => Some(CuttingOver),
            (Command::Cutover, _) => None,
            (Command::Recopy, Copying | Replicating) => Some(Copying),
            (Command::Recopy, _) => None,
        }
    }

    #[test]
    fn every_pair_online_and_offline() {
        for (mode, online_copied) in [(Mode::Online, true), (Mode::Offline, false)] {
            for state in JobState::ALL {
                for command in Command::ALL {
                    let view = Lifecycle {
                        state,
                        mode,
                        resume_to: Some(Copying),
                        initial_copy_done: online_copied,
                        verification_running: false,
                    };
                    let got = transition(view, command).ok().map(|j| j.state);
                    assert_eq!(
                        got,
                        expected(state, command, online_copied),
                        "{mode:?} {state:?} + {command:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn verify_rejected_while_running_in_every_state() {
        for state in JobState::ALL {
            for mode in [Mode::Offline, Mode::Online] {
                let view = Lifecycle {
                    state,
                    mode,
                    resume_to: Some(Copying),
                    initial_copy_done: true,
                    verification_running: true,
                };
                assert!(
                    transition(view, Command::Verify).is_err(),
                    "{state:?} {mode:?} accepted verify during a run"
                );
            }
        }
    }

    #[test]
    fn verify_after_completion_reopens_job() {
        let done = Lifecycle {
            initial_copy_done: true,
            ..job(Completed, Mode::Offline)
        };
        let verifying = transition(done, Command::Verify).unwrap();
        assert_eq!(verifying.state, Verifying);
        assert_eq!(verifying.resume_to, None);
        let err = transition(verifying, Command::Resume).unwrap_err();
        assert!(err.reason.contains("not paused"), "{}", err.reason);
    }

    #[test]
    fn verify_beside_replication_keeps_state() {
        let replicating = Lifecycle {
            initial_copy_done: true,
            resume_to: None,
            ..job(Replicating, Mode::Online)
        };
        let next = transition(replicating, Command::Verify).unwrap();
        assert_eq!(next, replicating);
    }

    #[test]
    fn verify_rejection_reasons_name_the_cause() {
        let cases = [
            (Copying, "initial copy"),
            (Paused, "resume it"),
            (CuttingOver, "cutover"),
            (Cancelled, "cannot be verified"),
        ];
        for (state, phrase) in cases {
            let err = transition(job(state, Mode::Offline), Command::Verify).unwrap_err();
            assert!(err.reason.contains(phrase), "{state:?}: {}", err.reason);
        }
    }

    #[test]
    fn failed_verification_resumes_to_copy() {
        let failed = Lifecycle {
            state: VerificationFailed,
            mode: Mode::Offline,
            resume_to: Some(Copying),
            initial_copy_done: true,
            verification_running: false,
        };
        assert_eq!(
            allowed_commands(failed),
            vec![Command::Resume, Command::Cancel, Command::Verify]
        );
        assert_eq!(transition(failed, Command::Resume).unwrap().state, Copying);
    }

    #[test]
    fn failed_cutover_verification_resumes_to_cutover() {
        let failed = Lifecycle {
            state: VerificationFailed,
            mode: Mode::Online,
            resume_to: Some(CuttingOver),
            initial_copy_done: true,
            verification_running: false,
        };
        assert_eq!(
            allowed_commands(failed),
            vec![Command::Resume, Command::Cancel, Command::Verify]
        );
        assert_eq!(
            transition(failed, Command::Resume).unwrap().state,
            CuttingOver
        );
        let err = transition(failed, Command::Recopy).unwrap_err();
        assert!(err.reason.contains("resume the job"), "{}", err.reason);
    }

    #[test]
    fn cutover_verification_can_pause_and_cancel() {
        let verifying = Lifecycle {
            state: Verifying,
            mode: Mode::Online,
            resume_to: None,
            initial_copy_done: true,
            verification_running: true,
        };
        assert_eq!(
            allowed_commands(verifying),
            vec![Command::Pause, Command::Cancel]
        );
        let pausing = transition(verifying, Command::Pause).unwrap();
        assert_eq!(pausing.resume_to, Some(Verifying));
        let paused = Lifecycle {
            state: Paused,
            ..pausing
        };
        assert_eq!(
            transition(paused, Command::Resume).unwrap().state,
            Verifying
        );
    }

    #[test]
    fn every_pair_offline_never_cuts_over() {
        for state in JobState::ALL {
            let view = Lifecycle {
                state,
                mode: Mode::Offline,
                resume_to: Some(Copying),
                initial_copy_done: true,
                verification_running: false,
            };
            let result = transition(view, Command::Cutover);
            assert!(result.is_err(), "{state:?} accepted cutover");
        }
    }

    #[test]
    fn every_pair_offline_never_recopies() {
        for state in JobState::ALL {
            let view = Lifecycle {
                state,
                mode: Mode::Offline,
                resume_to: Some(Copying),
                initial_copy_done: true,
                verification_running: false,
            };
            let result = transition(view, Command::Recopy);
            assert!(result.is_err(), "{state:?} accepted recopy");
        }
    }

    #[test]
    fn recopy_returns_online_job_to_copying() {
        let next = transition(job(Replicating, Mode::Online), Command::Recopy).unwrap();
        assert_eq!(next.state, Copying);
        assert_eq!(next.resume_to, None);
        let err = transition(job(CuttingOver, Mode::Online), Command::Recopy).unwrap_err();
        assert!(err.reason.contains("cuttingOver"), "{}", err.reason);
    }

    #[test]
    fn offline_cutover_reason_names_mode() {
        let err = transition(job(Copying, Mode::Offline), Command::Cutover).unwrap_err();
        assert!(err.reason.contains("online"));
    }

    #[test]
    fn cutover_waits_for_initial_copy() {
        let err = transition(job(Replicating, Mode::Online), Command::Cutover).unwrap_err();
        assert!(err.reason.contains("initial copy"));
    }

    #[test]
    fn pause_remembers_phase() {
        let paused = transition(job(Copying, Mode::Offline), Command::Pause).unwrap();
        assert_eq!(paused.state, Pausing);
        assert_eq!(paused.resume_to, Some(Copying));
        let resumed = transition(paused, Command::Resume).unwrap();
        assert_eq!(resumed.state, Copying);
        assert_eq!(resumed.resume_to, None);
    }

    #[test]
    fn resume_without_phase_is_rejected() {
        let err = transition(job(Failed, Mode::Offline), Command::Resume).unwrap_err();
        assert!(err.reason.contains("no phase"));
    }

    #[test]
    fn allowed_commands_follow_table() {
        let allowed = allowed_commands(job(Copying, Mode::Offline));
        assert_eq!(allowed, vec![Command::Pause, Command::Cancel]);
        let online = allowed_commands(job(Copying, Mode::Online));
        assert_eq!(
            online,
            vec![Command::Pause, Command::Cancel, Command::Recopy]
        );
        assert!(allowed_commands(job(Completed, Mode::Online)).is_empty());
    }

    #[test]
    fn state_names_round_trip() {
        for state in JobState::ALL {
            assert_eq!(JobState::parse(state.as_str()), Some(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
    }
}
