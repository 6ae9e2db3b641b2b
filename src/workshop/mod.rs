//! The workshop around the steps: the ladder, the exercise generator, reading the
//! probe's report back, and the tour's scorecard.

pub mod env;
pub mod exercise;
pub mod report;
pub mod scorecard;
pub mod steps;
