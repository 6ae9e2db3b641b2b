//! The environment variables the workshop reads, in one place: what each means and
//! who sets it.

/// `chapters`: the tests run the learner's binaries (chapters/) instead of the
/// references. `isolab check N` sets it.
pub const CHECK: &str = "ISOLAB_CHECK";

/// Set (to anything): a test that would skip because the machine lacks something
/// fails instead. CI sets it, so CI never passes by skipping.
pub const NO_SKIP: &str = "ISOLAB_NO_SKIP";

/// Set: the binaries are built already, so do not build (a run through sudo must not
/// build, or target/ would get files owned by root; `isolab check` builds first).
pub const PREBUILT: &str = "ISOLAB_PREBUILT";

/// The name of a normal user (not root) that tests running as root run step 06 as.
/// A rootless step must be run by a real unprivileged user: `.ci/run` creates
/// `isolab-test`, with a range in /etc/subuid, and sets this. Tests run by a normal
/// user run the step as themselves and need no variable.
pub const TEST_USER: &str = "ISOLAB_TEST_USER";

/// Not a variable: how the tests start the one line that says a comparison was left
/// out (a test that compares with root's box, run by a normal user), which
/// `isolab check` reads back from their output and lists.
pub const LEFT_OUT: &str = "left out";

/// The canary variable: see [`crate::container::canary::ENV`].
pub const CANARY: &str = crate::container::canary::ENV;

/// Are the tests checking the learner's chapters rather than the references?
pub fn checking_chapters() -> bool {
    std::env::var(CHECK).is_ok_and(|v| v == "chapters")
}

/// Must a test that cannot run here fail rather than skip?
pub fn no_skip() -> bool {
    std::env::var_os(NO_SKIP).is_some()
}

/// Are the binaries built already?
pub fn prebuilt() -> bool {
    std::env::var_os(PREBUILT).is_some()
}
