//! The median of a handful of rounds with a distribution-free confidence interval: the order
//! statistics s(k) and s(n+1−k) bracket the true median with probability
//! 1 − 2·P(Binomial(n, ½) ≤ k−1), whatever the rounds' distribution. The widest-coverage k is not
//! wanted: the narrowest interval with at least [`LEVEL`] is.

/// The confidence aimed at; the interval's own (higher, as ranks are discrete) is reported.
pub const LEVEL: f64 = 0.95;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MedianCi {
    pub median: f64,
    pub lo: f64,
    pub hi: f64,
    /// The 1-based ranks of `lo` and `hi` among the sorted values.
    pub ranks: (usize, usize),
    /// The interval's exact confidence.
    pub confidence: f64,
}

/// The median of `v` and its interval; None for no values. With fewer than 6 values no pair of
/// ranks reaches 95%: [min, max] is given with its lower confidence (5 values: 93.75%).
pub fn median_ci(v: &[f64]) -> Option<MedianCi> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let median = if n.is_multiple_of(2) { f64::midpoint(s[mid - 1], s[mid]) } else { s[mid] };
    let mut k = 1;
    while k < n.div_ceil(2) && confidence(n, k + 1) >= LEVEL {
        k += 1;
    }
    Some(MedianCi { median, lo: s[k - 1], hi: s[n - k], ranks: (k, n + 1 - k), confidence: confidence(n, k) })
}

/// P(s(k) ≤ median ≤ s(n+1−k)) = 1 − 2·Σ_{i<k} C(n, i) / 2ⁿ.
pub fn confidence(n: usize, k: usize) -> f64 {
    let mut c = 1.0; // C(n, 0)
    let mut tail = 0.0;
    for i in 0..k {
        tail += c;
        c = c * (n - i) as f64 / (i + 1) as f64;
    }
    1.0 - 2.0 * tail / 2f64.powi(i32::try_from(n).unwrap_or(i32::MAX))
}

/// "m [lo, hi]" with `digits` decimals, signed if `signed`.
pub fn cell(v: &[f64], digits: usize, signed: bool) -> String {
    match median_ci(v) {
        None => "—".into(),
        Some(c) if signed => format!("{:+.digits$} [{:+.digits$}, {:+.digits$}]", c.median, c.lo, c.hi),
        Some(c) => format!("{:.digits$} [{:.digits$}, {:.digits$}]", c.median, c.lo, c.hi),
    }
}

/// The heading's words for `n` rounds: which ranks bound the interval and its exact confidence.
pub fn describe(n: usize) -> String {
    let Some(c) = median_ci(&vec![0.0; n]) else { return "no rounds".into() };
    format!(
        "medians over {n} rounds with the distribution-free {:.1}% confidence interval of the median [ranks {} and {} of {n}]",
        100.0 * c.confidence,
        c.ranks.0,
        c.ranks.1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(clippy::float_cmp, reason = "exact: sums of binomial coefficients over a power of two")]
    fn confidences_are_the_binomial_ones() {
        assert_eq!(confidence(11, 2), 1.0 - 24.0 / 2048.0);
        assert_eq!(confidence(11, 3), 1.0 - 134.0 / 2048.0);
        assert_eq!(confidence(7, 1), 1.0 - 2.0 / 128.0);
        assert_eq!(confidence(20, 6), 1.0 - 43_400.0 / 1_048_576.0);
    }

    #[test]
    #[expect(clippy::float_cmp, reason = "the values are picked from the input, not computed")]
    fn eleven_rounds_use_ranks_2_and_10() {
        let v = [9.0, 3.0, 7.0, 1.0, 11.0, 5.0, 2.0, 10.0, 4.0, 8.0, 6.0];
        let c = median_ci(&v).unwrap();
        assert_eq!((c.median, c.lo, c.hi, c.ranks), (6.0, 2.0, 10.0, (2, 10)));
        assert_eq!(c.confidence, 0.988_281_25);
    }

    #[test]
    #[expect(clippy::float_cmp, reason = "the values are picked from the input, not computed")]
    fn seven_rounds_need_min_and_max() {
        let c = median_ci(&[5.0, 1.0, 4.0, 2.0, 7.0, 3.0, 6.0]).unwrap();
        assert_eq!((c.median, c.lo, c.hi, c.ranks), (4.0, 1.0, 7.0, (1, 7)));
        assert_eq!(c.confidence, 0.984_375);
    }

    #[test]
    fn twenty_rounds_use_ranks_6_and_15_and_an_even_median() {
        let v: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        let c = median_ci(&v).unwrap();
        assert_eq!((c.median, c.lo, c.hi, c.ranks), (10.5, 6.0, 15.0, (6, 15)));
    }

    #[test]
    #[expect(clippy::float_cmp, reason = "exact: one value")]
    fn few_rounds_fall_back_to_min_and_max() {
        let c = median_ci(&[2.0, 1.0, 3.0, 5.0, 4.0]).unwrap();
        assert_eq!((c.lo, c.hi, c.confidence), (1.0, 5.0, 0.9375));
        assert_eq!(median_ci(&[]), None);
        assert_eq!(median_ci(&[1.5]).unwrap().median, 1.5);
    }

    #[test]
    fn cells_and_headings_read_plainly() {
        assert_eq!(cell(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 1, true), "+4.0 [+1.0, +7.0]");
        assert_eq!(
            describe(11),
            "medians over 11 rounds with the distribution-free 98.8% confidence interval of the median [ranks 2 and 10 of 11]"
        );
    }
}
