//! "Did you mean" suggestions.
//! The keyword tables of every block are in `schema`.

/// Edit distance over chars where swapping two adjacent chars counts as one edit
/// (optimal string alignment), the commonest typo (`lable` for `label`).
#[cfg(test)]
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    Rows::default().distance(&a, &b, usize::MAX - 1)
}

/// Three rolling rows of the distance matrix, reused across candidates, so a
/// suggestion costs no allocation per candidate.
#[derive(Default)]
struct Rows {
    prev2: Vec<usize>,
    prev: Vec<usize>,
    cur: Vec<usize>,
}

impl Rows {
    /// The distance between `a` and `b` if it is at most `limit`, else some value above
    /// `limit`. Stops as soon as two consecutive rows are all above `limit`: every
    /// later cell is built from cells of the two rows above it (plus non-negative
    /// costs) or from its first column (`i`, which already exceeds a row's minimum),
    /// so it cannot come back down.
    fn distance(&mut self, a: &[char], b: &[char], limit: usize) -> usize {
        let m = b.len();
        for row in [&mut self.prev2, &mut self.prev, &mut self.cur] {
            row.clear();
            row.resize(m + 1, 0);
        }
        for (j, cell) in self.prev.iter_mut().enumerate() {
            *cell = j;
        }
        let mut prev_min = 0;
        for i in 1..=a.len() {
            let (prev2, prev, cur) = (&self.prev2, &self.prev, &mut self.cur);
            cur[0] = i;
            let mut cur_min = i;
            for j in 1..=m {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    v = v.min(prev2[j - 2] + 1);
                }
                cur[j] = v;
                cur_min = cur_min.min(v);
            }
            // prev2 <- prev, prev <- cur; the old prev2 becomes the next cur.
            std::mem::swap(&mut self.prev2, &mut self.prev);
            std::mem::swap(&mut self.prev, &mut self.cur);
            if cur_min > limit && prev_min > limit {
                return limit + 1;
            }
            prev_min = cur_min;
        }
        self.prev[m]
    }
}

/// Character counts of a word, for a cheap lower bound on the distance to a candidate:
/// an insertion or deletion changes the counts by one, a substitution takes one char
/// away and adds another, a transposition changes nothing. So the distance is at least
/// the number of the word's chars the candidate lacks, and at least the number of the
/// candidate's chars the word lacks. Chars share buckets (code point mod 128); a shared
/// bucket can only lower the bound, never raise it past the distance.
struct Histogram([i32; 128], usize);

impl Histogram {
    fn of(word: &[char]) -> Self {
        let mut h = [0i32; 128];
        for &c in word {
            h[c as usize % 128] += 1;
        }
        Histogram(h, word.len())
    }

    fn lower_bound(&mut self, candidate: &str) -> usize {
        let h = &mut self.0;
        let mut missing_from_candidate = self.1;
        let mut missing_from_word = 0usize;
        for c in candidate.chars() {
            let n = &mut h[c as usize % 128];
            if *n > 0 {
                missing_from_candidate -= 1;
            } else {
                missing_from_word += 1;
            }
            *n -= 1;
        }
        for c in candidate.chars() {
            h[c as usize % 128] += 1;
        }
        missing_from_candidate.max(missing_from_word)
    }
}

/// The closest candidate if it is plausibly a typo of `word` (the first of equally
/// close ones).
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    SuggestBudget::unlimited().suggest(word, candidates)
}

/// A bound on the work of suggestions among a configuration's *own* names (instances,
/// scripts, virtual server groups). Keyword suggestions choose among a fixed table, but
/// these grow with the file on both sides: a file can name thousands of missing
/// instances among thousands of defined ones, each comparison costing up to
/// `word × candidate` cells (a fuzzed 2.5 kB config spent minutes here). The budget is
/// charged per candidate examined; once spent, no further suggestion is made (the
/// findings are still reported, without "did you mean"), and a search cut short
/// suggests nothing rather than a worse match. Deterministic: it depends on the input
/// only.
pub(crate) struct SuggestBudget(u64);

impl SuggestBudget {
    /// Enough for a hundred typos among 5,000 ten-character names (~25 M cells, tens of
    /// milliseconds); a real file has a handful.
    pub(crate) const PER_LOAD: u64 = 50_000_000;

    pub(crate) fn new(cells: u64) -> Self {
        SuggestBudget(cells)
    }

    fn unlimited() -> Self {
        SuggestBudget(u64::MAX)
    }

    pub(crate) fn suggest<'a>(
        &mut self,
        word: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Option<&'a str> {
        let word: Vec<char> = word.chars().collect();
        let limit = (word.len() / 3).max(1);
        let mut rows = Rows::default();
        let mut cand: Vec<char> = Vec::new();
        let mut best: Option<(usize, &'a str)> = None;
        let mut hist = Histogram::of(&word);
        for c in candidates {
            // Reading the candidate (length, histogram); its distance below is charged
            // at its worst case.
            let len = c.chars().count();
            if !self.charge(len as u64 + 1) {
                return None;
            }
            // Each edit changes the length by at most one: a candidate whose length is
            // further than `limit` from the word's cannot be within `limit`.
            if len.abs_diff(word.len()) > limit {
                continue;
            }
            if hist.lower_bound(c) > limit {
                continue;
            }
            if !self.charge((word.len() as u64 + 1) * (len as u64 + 1)) {
                return None;
            }
            cand.clear();
            cand.extend(c.chars());
            let d = rows.distance(&word, &cand, limit);
            if d <= limit && best.is_none_or(|(b, _)| d < b) {
                best = Some((d, c));
            }
        }
        best.map(|(_, c)| c)
    }

    /// Takes `cells` from the budget; false (and the budget spent) if it had less.
    fn charge(&mut self, cells: u64) -> bool {
        match self.0.checked_sub(cells) {
            Some(left) => {
                self.0 = left;
                true
            }
            None => {
                self.0 = 0;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(distance("priorty", "priority"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("lable", "label"), 1);
    }

    #[test]
    fn suggestions_pick_the_closest_plausible_keyword() {
        let kws = ["priority", "preempt_delay", "interface", "state"];
        assert_eq!(suggest("priorty", kws), Some("priority"));
        assert_eq!(suggest("intreface", kws), Some("interface"));
        assert_eq!(suggest("foo", kws), None);
        assert_eq!(suggest("stat", kws), Some("state"));
    }

    #[test]
    fn a_spent_budget_suggests_nothing_and_stays_spent() {
        let names = ["VI_web", "VI_db", "VI_cache"];
        // Three candidates read (7 + 6 + 9 cells) and two distances (7 × 7, 7 × 6).
        let mut ample = SuggestBudget::new(1_000);
        assert_eq!(ample.suggest("VI_wbe", names), Some("VI_web"));
        let mut tight = SuggestBudget::new(20);
        assert_eq!(tight.suggest("VI_wbe", names), None);
        assert_eq!(tight.0, 0);
        assert_eq!(tight.suggest("VI_db", ["VI_db"]), None);
    }

    /// Thousands of missing names among thousands of long ones (the shape of a fuzzed
    /// config that took minutes): the work is bounded by the budget, not by the product.
    #[test]
    fn many_long_names_cost_at_most_the_budget() {
        let long = "VI_".to_string() + &"B".repeat(100);
        let names: Vec<String> = (0..3000).map(|n| format!("{long}{n}")).collect();
        let mut budget = SuggestBudget::new(SuggestBudget::PER_LOAD);
        let started = std::time::Instant::now();
        let mut made = 0;
        for n in 0..3000 {
            let word = format!("{long}x{n}");
            made += usize::from(
                budget
                    .suggest(&word, names.iter().map(String::as_str))
                    .is_some(),
            );
        }
        assert_eq!(budget.0, 0);
        assert!(made > 0 && made < 3000, "{made} suggestions");
        // Not a timing assertion: 50 M cells run in well under a second even in a
        // debug build on a loaded machine; a regression to the product is ~10^11.
        eprintln!("{made} suggestions in {:?}", started.elapsed());
    }

    /// The plain full-matrix distance (the implementation before the rolling rows,
    /// length filter and cut-off), as the reference.
    fn reference_distance(a: &str, b: &str) -> usize {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for (i, row) in d.iter_mut().enumerate() {
            row[0] = i;
        }
        for (j, cell) in d[0].iter_mut().enumerate() {
            *cell = j;
        }
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut v = (d[i - 1][j] + 1)
                    .min(d[i][j - 1] + 1)
                    .min(d[i - 1][j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    v = v.min(d[i - 2][j - 2] + 1);
                }
                d[i][j] = v;
            }
        }
        d[a.len()][b.len()]
    }

    fn reference_suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
        let limit = (word.chars().count() / 3).max(1);
        candidates
            .iter()
            .map(|c| (reference_distance(word, c), *c))
            .filter(|(d, _)| *d <= limit)
            .min_by_key(|(d, _)| *d)
            .map(|(_, c)| c)
    }

    #[test]
    fn long_words_are_cheap() {
        // A fuzzed config's "keyword" can be kilobytes long; no candidate is close.
        let word = "x".repeat(100_000);
        assert_eq!(
            suggest(&word, crate::schema::names(crate::schema::TOP)),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn distance_matches_the_full_matrix(a in "[abcé_]{0,12}", b in "[abcé_]{0,12}") {
            proptest::prop_assert_eq!(distance(&a, &b), reference_distance(&a, &b));
            let mut rows = Rows::default();
            let (ac, bc): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            for limit in 0..6 {
                let d = rows.distance(&ac, &bc, limit);
                let full = reference_distance(&a, &b);
                if full <= limit {
                    proptest::prop_assert_eq!(d, full);
                } else {
                    proptest::prop_assert!(d > limit);
                }
            }
        }

        #[test]
        fn histogram_bound_never_exceeds_the_distance(a in "[abcé_\u{80}\u{100}]{0,12}", b in "[abcé_\u{80}\u{100}]{0,12}") {
            let ac: Vec<char> = a.chars().collect();
            proptest::prop_assert!(Histogram::of(&ac).lower_bound(&b) <= reference_distance(&a, &b));
        }

        #[test]
        fn suggest_matches_the_full_matrix(
            word in "[abcé_]{0,14}",
            cands in proptest::collection::vec("[abcé_]{0,14}", 0..12),
        ) {
            let cands: Vec<&str> = cands.iter().map(String::as_str).collect();
            proptest::prop_assert_eq!(
                suggest(&word, cands.iter().copied()),
                reference_suggest(&word, &cands)
            );
        }
    }
}
