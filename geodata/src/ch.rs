//! Queries on a contraction hierarchy prepared by `fast_paths`.
//!
//! `fast_paths` prepares the hierarchy (node ordering and shortcuts) and answers
//! one-to-one queries. Many-to-one queries ("which of these 20 units reaches the incident
//! first") need the hierarchy's upward graphs themselves: one backward search from the
//! target, then one pruned forward search per source, all in one call. [`UpwardGraphs`]
//! holds those graphs in rank order (higher rank = contracted later), compact and
//! cache-friendly; it is read from `fast_paths`' own serialised form, so the pinned
//! `fast_paths` version is part of this module's contract (a test compares both answers).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use fast_paths::FastGraph;
use serde::Deserialize;

/// A distance that is not reached.
pub const UNREACHED: u64 = u64::MAX;

/// Upward arcs of a contraction hierarchy, nodes numbered by rank.
#[derive(Debug, Clone)]
pub struct UpwardGraphs {
    /// `rank_of[node]`.
    rank_of: Vec<u32>,
    fwd_first: Vec<u32>,
    /// (higher rank, weight): arcs leaving a node towards higher ranks.
    fwd: Vec<(u32, u32)>,
    bwd_first: Vec<u32>,
    /// (higher rank, weight): arcs arriving at a node from higher ranks.
    bwd: Vec<(u32, u32)>,
}

// Mirrors of `fast_paths` 1.0's serialised `FastGraph` (field order matters).
#[derive(Deserialize)]
struct FastGraphMirror {
    num_nodes: usize,
    ranks: Vec<usize>,
    edges_fwd: Vec<EdgeMirror>,
    first_edge_ids_fwd: Vec<usize>,
    edges_bwd: Vec<EdgeMirror>,
    first_edge_ids_bwd: Vec<usize>,
}

#[derive(Deserialize)]
#[allow(dead_code)] // every field must be read to follow the encoding
struct EdgeMirror {
    base_node: usize,
    adj_node: usize,
    weight: usize,
    replaced_in_edge: usize,
    replaced_out_edge: usize,
}

impl UpwardGraphs {
    pub fn from_fast_graph(graph: &FastGraph) -> Self {
        let bytes = postcard::to_stdvec(graph).expect("a FastGraph always serialises");
        let m: FastGraphMirror =
            postcard::from_bytes(&bytes).expect("FastGraph layout of fast_paths 1.0");
        assert_eq!(
            m.num_nodes,
            m.ranks.len(),
            "FastGraph layout of fast_paths 1.0"
        );
        let rank_of: Vec<u32> = m.ranks.iter().map(|&r| r as u32).collect();
        let convert = |first: &[usize], edges: &[EdgeMirror]| {
            let first: Vec<u32> = first.iter().map(|&f| f as u32).collect();
            let arcs = edges
                .iter()
                .map(|e| (rank_of[e.adj_node], e.weight.min(u32::MAX as usize) as u32))
                .collect();
            (first, arcs)
        };
        let (fwd_first, fwd) = convert(&m.first_edge_ids_fwd, &m.edges_fwd);
        let (bwd_first, bwd) = convert(&m.first_edge_ids_bwd, &m.edges_bwd);
        Self {
            rank_of,
            fwd_first,
            fwd,
            bwd_first,
            bwd,
        }
    }

    pub fn num_nodes(&self) -> usize {
        self.rank_of.len()
    }

    fn fwd_arcs(&self, rank: u32) -> &[(u32, u32)] {
        let r = rank as usize;
        &self.fwd[self.fwd_first[r] as usize..self.fwd_first[r + 1] as usize]
    }

    fn bwd_arcs(&self, rank: u32) -> &[(u32, u32)] {
        let r = rank as usize;
        &self.bwd[self.bwd_first[r] as usize..self.bwd_first[r + 1] as usize]
    }

    /// Shortest distance from each source (a set of (node, initial weight) seeds) to the
    /// target (a set of (node, final weight) seeds), [`UNREACHED`] where there is no path.
    pub fn many_to_one(&self, sources: &[Vec<(u32, u64)>], target: &[(u32, u64)]) -> Vec<u64> {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.ensure(self.num_nodes());
            self.backward(&mut s, target);
            sources
                .iter()
                .map(|seeds| self.forward(&mut s, seeds))
                .collect()
        })
    }

    /// Complete upward search from the target over reversed arcs.
    fn backward(&self, s: &mut Scratch, target: &[(u32, u64)]) {
        s.bump_bwd();
        let Scratch {
            bwd_stamp,
            bwd_dist,
            bwd_gen,
            heap,
            ..
        } = s;
        heap.clear();
        for &(node, w) in target {
            let r = self.rank_of[node as usize];
            if bwd_stamp[r as usize] != *bwd_gen || w < bwd_dist[r as usize] {
                bwd_stamp[r as usize] = *bwd_gen;
                bwd_dist[r as usize] = w;
                heap.push(Reverse((w, r)));
            }
        }
        while let Some(Reverse((d, r))) = heap.pop() {
            if d > bwd_dist[r as usize] {
                continue;
            }
            // Stall on demand: a higher node already offers a shorter way to the target.
            if self.fwd_arcs(r).iter().any(|&(up, w)| {
                bwd_stamp[up as usize] == *bwd_gen
                    && bwd_dist[up as usize].saturating_add(u64::from(w)) < d
            }) {
                continue;
            }
            for &(up, w) in self.bwd_arcs(r) {
                let nd = d.saturating_add(u64::from(w));
                let u = up as usize;
                if bwd_stamp[u] != *bwd_gen || nd < bwd_dist[u] {
                    bwd_stamp[u] = *bwd_gen;
                    bwd_dist[u] = nd;
                    heap.push(Reverse((nd, up)));
                }
            }
        }
    }

    /// Upward search from one source, meeting the backward search space; stops once no
    /// shorter meeting is possible.
    fn forward(&self, s: &mut Scratch, seeds: &[(u32, u64)]) -> u64 {
        s.bump_fwd();
        let Scratch {
            fwd_stamp,
            fwd_dist,
            fwd_gen,
            bwd_stamp,
            bwd_dist,
            bwd_gen,
            heap,
            ..
        } = s;
        heap.clear();
        for &(node, w) in seeds {
            let r = self.rank_of[node as usize];
            if fwd_stamp[r as usize] != *fwd_gen || w < fwd_dist[r as usize] {
                fwd_stamp[r as usize] = *fwd_gen;
                fwd_dist[r as usize] = w;
                heap.push(Reverse((w, r)));
            }
        }
        let mut best = UNREACHED;
        while let Some(Reverse((d, r))) = heap.pop() {
            if d >= best {
                break;
            }
            if d > fwd_dist[r as usize] {
                continue;
            }
            if bwd_stamp[r as usize] == *bwd_gen {
                best = best.min(d.saturating_add(bwd_dist[r as usize]));
            }
            // Stall on demand, mirrored.
            if self.bwd_arcs(r).iter().any(|&(up, w)| {
                fwd_stamp[up as usize] == *fwd_gen
                    && fwd_dist[up as usize].saturating_add(u64::from(w)) < d
            }) {
                continue;
            }
            for &(up, w) in self.fwd_arcs(r) {
                let nd = d.saturating_add(u64::from(w));
                let u = up as usize;
                if nd < best && (fwd_stamp[u] != *fwd_gen || nd < fwd_dist[u]) {
                    fwd_stamp[u] = *fwd_gen;
                    fwd_dist[u] = nd;
                    heap.push(Reverse((nd, up)));
                }
            }
        }
        best
    }
}

/// Per-thread search state, reused across queries (generation stamps instead of clearing).
#[derive(Default)]
struct Scratch {
    fwd_stamp: Vec<u32>,
    fwd_dist: Vec<u64>,
    fwd_gen: u32,
    bwd_stamp: Vec<u32>,
    bwd_dist: Vec<u64>,
    bwd_gen: u32,
    heap: BinaryHeap<Reverse<(u64, u32)>>,
}

impl Scratch {
    fn ensure(&mut self, n: usize) {
        if self.fwd_stamp.len() < n {
            self.fwd_stamp = vec![0; n];
            self.fwd_dist = vec![0; n];
            self.bwd_stamp = vec![0; n];
            self.bwd_dist = vec![0; n];
            self.fwd_gen = 0;
            self.bwd_gen = 0;
        }
    }

    fn bump_fwd(&mut self) {
        self.fwd_gen = self.fwd_gen.wrapping_add(1);
        if self.fwd_gen == 0 {
            self.fwd_stamp.fill(0);
            self.fwd_gen = 1;
        }
    }

    fn bump_bwd(&mut self) {
        self.bwd_gen = self.bwd_gen.wrapping_add(1);
        if self.bwd_gen == 0 {
            self.bwd_stamp.fill(0);
            self.bwd_gen = 1;
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use fast_paths::InputGraph;
    use rand::{Rng, SeedableRng};

    #[test]
    fn many_to_one_agrees_with_fast_paths_on_random_graphs() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..5 {
            let n = 60;
            let mut input = InputGraph::new();
            for _ in 0..200 {
                let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
                input.add_edge(a, b, rng.random_range(1..100));
            }
            input.add_edge(n - 1, 0, 5); // every node id in range
            input.freeze();
            let fg = fast_paths::prepare(&input);
            let up = UpwardGraphs::from_fast_graph(&fg);
            let target = rng.random_range(0..n);
            let sources: Vec<usize> = (0..n).collect();
            let seeds: Vec<Vec<(u32, u64)>> =
                sources.iter().map(|&s| vec![(s as u32, 0)]).collect();
            let got = up.many_to_one(&seeds, &[(target as u32, 0)]);
            for (&s, &d) in sources.iter().zip(&got) {
                let want = fast_paths::calc_path(&fg, s, target).map(|p| p.get_weight() as u64);
                assert_eq!(want.unwrap_or(UNREACHED), d, "{s} -> {target}");
            }
        }
    }
}
