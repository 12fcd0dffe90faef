//! Quality gates (`--fail-under METRIC=VALUE`): a minimum for macro-F1, micro-F1 or one topic's
//! F1, checked against an evaluation report; a failed gate is exit code 1.

use crate::eval::evaluate::EvalReport;

#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// `macro_f1`, `micro_f1` or a topic id (its F1).
    pub metric: String,
    pub minimum: f64,
}

/// One gate checked: the figure and whether it held.
#[derive(Debug, Clone, PartialEq)]
pub struct GateResult {
    pub gate: Gate,
    pub value: f64,
    pub passed: bool,
}

impl std::fmt::Display for GateResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gate {} >= {:.3}: {:.3} {}",
            self.gate.metric,
            self.gate.minimum,
            self.value,
            if self.passed { "ok" } else { "FAILED" }
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GateError {
    #[error("`--fail-under {0}`: write METRIC=VALUE, e.g. macro_f1=0.80")]
    Syntax(String),
    #[error("`--fail-under {spec}`: `{value}` is not a number")]
    NotANumber { spec: String, value: String },
    #[error("`--fail-under {spec}`: a gate is a score from 0 to 1, not `{value}`")]
    OutOfRange { spec: String, value: String },
    #[error("`--fail-under {metric}=...`: `{metric}` is neither macro_f1, micro_f1 nor a topic of the taxonomy ({topics})")]
    UnknownMetric { metric: String, topics: String },
}

/// Parses `METRIC=VALUE` specs (blank ones are ignored); values must lie in 0-1.
pub fn parse_gates(specs: &[String]) -> Result<Vec<Gate>, GateError> {
    specs
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|spec| {
            let (key, value) = spec
                .split_once('=')
                .ok_or_else(|| GateError::Syntax(spec.clone()))?;
            let minimum: f64 = value.trim().parse().map_err(|_| GateError::NotANumber {
                spec: spec.clone(),
                value: value.to_string(),
            })?;
            // NaN fails this check too.
            if !(0.0..=1.0).contains(&minimum) {
                return Err(GateError::OutOfRange {
                    spec: spec.clone(),
                    value: value.trim().to_string(),
                });
            }
            Ok(Gate {
                metric: key.trim().to_string(),
                minimum,
            })
        })
        .collect()
}

/// Checks every gate names `macro_f1`, `micro_f1` or one of `topics`, before any scoring.
pub fn check_metrics(gates: &[Gate], topics: &[String]) -> Result<(), GateError> {
    match gates.iter().find(|g| {
        !matches!(g.metric.as_str(), "macro_f1" | "micro_f1") && !topics.contains(&g.metric)
    }) {
        Some(gate) => Err(GateError::UnknownMetric {
            metric: gate.metric.clone(),
            topics: topics.join(", "),
        }),
        None => Ok(()),
    }
}

/// Checks every gate against `report`; a metric the report lacks is an error, not a pass or a
/// silent zero.
pub fn check_gates(gates: &[Gate], report: &EvalReport) -> Result<Vec<GateResult>, GateError> {
    gates
        .iter()
        .map(|gate| {
            let value = match gate.metric.as_str() {
                "macro_f1" => report.overall.macro_f1,
                "micro_f1" => report.overall.micro_f1,
                topic => report
                    .per_topic
                    .iter()
                    .find(|t| t.topic == topic)
                    .map(|t| t.f1)
                    .ok_or_else(|| GateError::UnknownMetric {
                        metric: topic.to_string(),
                        topics: report
                            .per_topic
                            .iter()
                            .map(|t| t.topic.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?,
            };
            Ok(GateResult {
                gate: gate.clone(),
                value,
                passed: value >= gate.minimum,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn gates_parse_and_refuse_nonsense() {
        assert_eq!(
            parse_gates(&specs(&["macro_f1=0.9", " ", "cyberattack = 0.5"])).unwrap(),
            vec![
                Gate {
                    metric: "macro_f1".into(),
                    minimum: 0.9
                },
                Gate {
                    metric: "cyberattack".into(),
                    minimum: 0.5
                }
            ]
        );
        assert!(matches!(
            parse_gates(&specs(&["macro_f1"])),
            Err(GateError::Syntax(_))
        ));
        assert!(matches!(
            parse_gates(&specs(&["macro_f1=x"])),
            Err(GateError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_gates(&specs(&["macro_f1=1.5"])),
            Err(GateError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_gates(&specs(&["macro_f1=NaN"])),
            Err(GateError::OutOfRange { .. })
        ));
    }
}
