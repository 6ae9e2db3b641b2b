//! The workshop around the steps: the ladder, the exercise generator, reading the
//! probe's report back, the tour's scorecard, the environment variables, and the
//! maintainer's checks that no code is written twice and that no code line in the
//! book scrolls.

pub mod codebox;
pub mod duplicates;
pub mod env;
pub mod exercise;
pub mod report;
pub mod scorecard;
pub mod steps;
