//! The workshop around the steps: the ladder, the exercise generator, reading the
//! probe's report back, the tour's scorecard, the environment variables, and the
//! maintainer's check that no code is written twice.

pub mod duplicates;
pub mod env;
pub mod exercise;
pub mod report;
pub mod scorecard;
pub mod steps;
