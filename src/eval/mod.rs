//! Scoring predictions against hand labels: metrics, bootstrap evaluation, predictions files and
//! reports.

pub mod evaluate;
pub mod gates;
pub mod metrics;
pub mod predictions;
pub mod report;
