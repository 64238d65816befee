//! Multiple trips per vehicle. The search plans trips: a vehicle type allowed `k` trips offers
//! `k` trip slots per physical vehicle. Trips are then chained into vehicle days, each next
//! trip leaving the depot after the previous one is back and reloaded; a solution whose trips
//! need more vehicles than the type has is infeasible (priced while searching).

/// When a trip can leave the depot and how long it takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Span {
    pub earliest: f64,
    pub latest: f64,
    pub duration: f64,
}

/// Chains trips into vehicle days of at most `max_trips` trips, `reload` apart: each trip, in
/// order of latest departure (the most urgent first), follows the chain that frees up last
/// early enough for it (and that `fits` accepts, given the chain and the trip), leaving as
/// early as it can after it; else it starts a new chain. Returns the chains as trip indices.
pub(crate) fn chain(
    spans: &[Span],
    reload: f64,
    max_trips: usize,
    mut fits: impl FnMut(&[usize], usize) -> bool,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by(|&a, &b| {
        (spans[a].latest, spans[a].earliest)
            .partial_cmp(&(spans[b].latest, spans[b].earliest))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    // Each chain: its trips and when its vehicle is back from the last one.
    let mut chains: Vec<(Vec<usize>, f64)> = Vec::new();
    for t in order {
        let s = spans[t];
        let mut open: Vec<usize> = (0..chains.len())
            .filter(|&c| chains[c].0.len() < max_trips && chains[c].1 + reload <= s.latest + 1e-9)
            .collect();
        // Latest free first: keeps the vehicles that are free early for early trips.
        open.sort_by(|&a, &b| chains[b].1.total_cmp(&chains[a].1).then(a.cmp(&b)));
        match open.into_iter().find(|&c| fits(&chains[c].0, t)) {
            Some(c) => {
                let leave = (chains[c].1 + reload).max(s.earliest);
                chains[c].0.push(t);
                chains[c].1 = leave + s.duration;
            }
            None => chains.push((vec![t], s.earliest + s.duration)),
        }
    }
    chains.into_iter().map(|(c, _)| c).collect()
}

#[cfg(test)]
mod tests {
    use super::{Span, chain};

    #[test]
    fn chains_trips_that_follow_each_other() {
        let span = |earliest: f64, latest: f64, duration: f64| Span {
            earliest,
            latest,
            duration,
        };
        // Two trips that must leave at once, two that may leave later: two vehicles.
        let spans = [
            span(0.0, 0.0, 10.0),
            span(1.0, 1.0, 11.0),
            span(0.0, 30.0, 5.0),
            span(0.0, 13.0, 5.0),
        ];
        let chains = chain(&spans, 2.0, 2, |_, _| true);
        assert_eq!(chains.len(), 2, "{chains:?}");
        // Trip 3 must leave by 13: only after trip 0 (back at 10, reloaded at 12).
        assert!(chains.contains(&vec![0, 3]) && chains.contains(&vec![1, 2]));
        // One trip per vehicle, or chains refused: one vehicle per trip.
        assert_eq!(chain(&spans, 2.0, 1, |_, _| true).len(), 4);
        assert_eq!(chain(&spans, 2.0, 3, |_, _| false).len(), 4);
    }
}
