//! Splits a tokenized article into overlapping windows that each fit the encoder.

use serde::{Deserialize, Serialize};

/// How an article longer than the encoder's input is cut into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowConfig {
    /// Longest encoder input, special tokens and prefix included.
    pub max_tokens: usize,
    /// Content tokens shared by consecutive windows.
    pub overlap: usize,
    /// Windows kept per article (later ones are dropped and the article is marked truncated);
    /// 0 keeps every window.
    pub max_windows: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WindowError {
    #[error("window overlap {overlap} must be smaller than the {budget} content tokens a window holds (`--max-tokens` minus special and prefix tokens); lower `--overlap`")]
    OverlapTooLarge { overlap: usize, budget: usize },
    #[error("`--max-tokens` {max_tokens} leaves no room for text after {reserved} special and prefix tokens; raise it")]
    NoRoom { max_tokens: usize, reserved: usize },
}

/// A half-open range of content-token indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRange {
    pub start: usize,
    pub end: usize,
}

impl WindowConfig {
    /// Content tokens one window holds when `reserved` positions go to special and prefix tokens.
    pub fn budget(&self, reserved: usize) -> Result<usize, WindowError> {
        match self.max_tokens.checked_sub(reserved) {
            Some(budget) if budget > 0 => {
                if self.overlap >= budget {
                    Err(WindowError::OverlapTooLarge {
                        overlap: self.overlap,
                        budget,
                    })
                } else {
                    Ok(budget)
                }
            }
            _ => Err(WindowError::NoRoom {
                max_tokens: self.max_tokens,
                reserved,
            }),
        }
    }

    /// Splits `content_len` tokens into windows of at most `budget` tokens, consecutive windows
    /// sharing exactly `overlap` tokens. An empty article still yields one (empty) window so that
    /// it gets an embedding. Returns the windows and whether `max_windows` dropped any.
    pub fn split(&self, content_len: usize, budget: usize) -> (Vec<TokenRange>, bool) {
        let stride = budget - self.overlap;
        let mut windows = Vec::with_capacity(content_len / stride + 1);
        let mut start = 0;
        loop {
            let end = (start + budget).min(content_len);
            windows.push(TokenRange { start, end });
            if end == content_len {
                break;
            }
            start += stride;
        }
        let truncated = self.max_windows > 0 && windows.len() > self.max_windows;
        if truncated {
            windows.truncate(self.max_windows);
        }
        (windows, truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_tokens: usize, overlap: usize) -> WindowConfig {
        WindowConfig {
            max_tokens,
            overlap,
            max_windows: 0,
        }
    }

    #[test]
    fn windows_cover_every_token_within_budget_with_exact_overlap() {
        for content_len in [0, 1, 5, 8, 9, 10, 17, 100, 1001] {
            for (max_tokens, overlap) in [(12, 0), (12, 3), (12, 7), (512, 64)] {
                let cfg = config(max_tokens, overlap);
                let budget = cfg.budget(4).unwrap();
                let (windows, truncated) = cfg.split(content_len, budget);
                assert!(!truncated);
                assert_eq!(windows[0].start, 0);
                assert_eq!(windows.last().unwrap().end, content_len);
                for w in &windows {
                    assert!(w.end - w.start <= budget, "{w:?} over budget {budget}");
                    assert!(w.end > w.start || content_len == 0);
                }
                for pair in windows.windows(2) {
                    assert_eq!(pair[0].end - pair[1].start, overlap, "{pair:?}");
                }
            }
        }
    }

    #[test]
    fn short_article_is_one_window() {
        let cfg = config(512, 64);
        let (windows, _) = cfg.split(300, cfg.budget(4).unwrap());
        assert_eq!(windows, vec![TokenRange { start: 0, end: 300 }]);
    }

    #[test]
    fn max_windows_truncates_and_reports_it() {
        let cfg = WindowConfig {
            max_tokens: 14,
            overlap: 2,
            max_windows: 2,
        };
        let (windows, truncated) = cfg.split(100, cfg.budget(4).unwrap());
        assert!(truncated);
        assert_eq!(
            windows,
            vec![
                TokenRange { start: 0, end: 10 },
                TokenRange { start: 8, end: 18 }
            ]
        );
    }

    #[test]
    fn rejects_overlap_that_leaves_no_progress() {
        assert_eq!(
            config(12, 8).budget(4),
            Err(WindowError::OverlapTooLarge {
                overlap: 8,
                budget: 8
            })
        );
        assert!(matches!(
            config(4, 0).budget(4),
            Err(WindowError::NoRoom { .. })
        ));
    }
}
