//! The directed road graph derived from a city's roads, and its connectivity.

use crate::model::{NodeIdx, Road, RoadIdx};

/// One drivable direction of a road.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arc {
    pub tail: NodeIdx,
    pub head: NodeIdx,
    pub road: RoadIdx,
    /// True when the arc runs in the road's `from` -> `to` order.
    pub along: bool,
}

/// Every drivable arc of `roads`, in road order (forward before backward).
pub fn arcs(roads: &[Road]) -> Vec<Arc> {
    let mut out = Vec::with_capacity(roads.len() * 2);
    for (i, r) in roads.iter().enumerate() {
        let road = i as RoadIdx;
        if r.direction.forward() {
            out.push(Arc {
                tail: r.from,
                head: r.to,
                road,
                along: true,
            });
        }
        if r.direction.backward() {
            out.push(Arc {
                tail: r.to,
                head: r.from,
                road,
                along: false,
            });
        }
    }
    out
}

/// Compressed adjacency lists: the arcs leaving each node.
#[derive(Debug, Clone)]
pub struct Adjacency {
    first: Vec<u32>,
    targets: Vec<(NodeIdx, u32)>,
}

impl Adjacency {
    /// `edges` are (tail, head, payload).
    pub fn new(num_nodes: usize, edges: impl Iterator<Item = (NodeIdx, NodeIdx, u32)>) -> Self {
        let mut list: Vec<(NodeIdx, NodeIdx, u32)> = edges.collect();
        list.sort_unstable_by_key(|e| e.0);
        let mut first = vec![0u32; num_nodes + 1];
        for e in &list {
            first[e.0 as usize + 1] += 1;
        }
        for i in 0..num_nodes {
            first[i + 1] += first[i];
        }
        Self {
            first,
            targets: list.into_iter().map(|(_, h, p)| (h, p)).collect(),
        }
    }

    pub fn out(&self, node: NodeIdx) -> &[(NodeIdx, u32)] {
        let n = node as usize;
        &self.targets[self.first[n] as usize..self.first[n + 1] as usize]
    }
}

/// Strongly connected components (Kosaraju, iterative). Returns the component id of every
/// node; ids are dense from 0.
pub fn strongly_connected_components(num_nodes: usize, arcs: &[Arc]) -> Vec<u32> {
    let fwd = Adjacency::new(num_nodes, arcs.iter().map(|a| (a.tail, a.head, 0)));
    let bwd = Adjacency::new(num_nodes, arcs.iter().map(|a| (a.head, a.tail, 0)));
    // First pass: order nodes by finishing time.
    let mut visited = vec![false; num_nodes];
    let mut order = Vec::with_capacity(num_nodes);
    let mut stack: Vec<(NodeIdx, usize)> = Vec::new();
    for start in 0..num_nodes as NodeIdx {
        if visited[start as usize] {
            continue;
        }
        visited[start as usize] = true;
        stack.push((start, 0));
        while let Some((node, next)) = stack.last_mut() {
            let out = fwd.out(*node);
            if let Some(&(head, _)) = out.get(*next) {
                *next += 1;
                if !visited[head as usize] {
                    visited[head as usize] = true;
                    stack.push((head, 0));
                }
            } else {
                order.push(*node);
                stack.pop();
            }
        }
    }
    // Second pass: reverse graph in decreasing finishing time.
    const NONE: u32 = u32::MAX;
    let mut comp = vec![NONE; num_nodes];
    let mut next_comp = 0;
    let mut todo = Vec::new();
    for &root in order.iter().rev() {
        if comp[root as usize] != NONE {
            continue;
        }
        comp[root as usize] = next_comp;
        todo.push(root);
        while let Some(node) = todo.pop() {
            for &(tail, _) in bwd.out(node) {
                if comp[tail as usize] == NONE {
                    comp[tail as usize] = next_comp;
                    todo.push(tail);
                }
            }
        }
        next_comp += 1;
    }
    comp
}

/// Keeps only the largest strongly connected part of the road graph, so that every kept
/// node can reach every other: dead-end one-ways at the edge of an extract would otherwise
/// make places reachable in one direction only. Returns the kept nodes (old indices in new
/// order) and the roads rewritten to the new node indices.
pub fn keep_largest_component<T: Copy>(nodes: &[T], roads: Vec<Road>) -> (Vec<T>, Vec<Road>) {
    let all_arcs = arcs(&roads);
    let comp = strongly_connected_components(nodes.len(), &all_arcs);
    let mut sizes = vec![0usize; comp.iter().map(|&c| c as usize + 1).max().unwrap_or(0)];
    for &c in &comp {
        sizes[c as usize] += 1;
    }
    let Some(best) = (0..sizes.len()).max_by_key(|&c| (sizes[c], std::cmp::Reverse(c))) else {
        return (Vec::new(), Vec::new());
    };
    let mut new_index = vec![u32::MAX; nodes.len()];
    let mut kept = Vec::with_capacity(sizes[best]);
    for (i, &c) in comp.iter().enumerate() {
        if c as usize == best {
            new_index[i] = kept.len() as u32;
            kept.push(nodes[i]);
        }
    }
    let roads = roads
        .into_iter()
        .filter_map(|mut r| {
            let (f, t) = (new_index[r.from as usize], new_index[r.to as usize]);
            (f != u32::MAX && t != u32::MAX).then(|| {
                r.from = f;
                r.to = t;
                r
            })
        })
        .collect();
    (kept, roads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Direction, RoadClass};

    fn road(from: u32, to: u32, direction: Direction) -> Road {
        Road {
            from,
            to,
            shape: vec![],
            direction,
            class: RoadClass::Residential,
            speed_kmh: 30,
            length_m: 100.0,
            street: None,
        }
    }

    #[test]
    fn one_way_dead_end_is_dropped() {
        // 0 <-> 1 <-> 2 is a component; 2 -> 3 is a one-way out of it.
        let roads = vec![
            road(0, 1, Direction::Both),
            road(1, 2, Direction::Both),
            road(2, 3, Direction::Forward),
        ];
        let (nodes, roads) = keep_largest_component(&[10, 11, 12, 13], roads);
        assert_eq!(nodes, vec![10, 11, 12]);
        assert_eq!(roads.len(), 2);
    }

    #[test]
    fn one_way_ring_is_one_component() {
        let roads = vec![
            road(0, 1, Direction::Forward),
            road(1, 2, Direction::Forward),
            road(0, 2, Direction::Backward),
        ];
        let comp = strongly_connected_components(3, &arcs(&roads));
        assert!(comp.iter().all(|&c| c == comp[0]));
    }
}
