//! Nested groups as a graph: descendants and ancestors of groups, safe
//! against cycles (A in B, B in A) because every walk keeps a visited set.

use std::collections::{HashMap, HashSet};

/// Group -> nested group edges of one connection, by internal id.
#[derive(Debug, Default)]
pub struct GroupGraph {
    children: HashMap<i64, Vec<i64>>,
    parents: HashMap<i64, Vec<i64>>,
}

impl GroupGraph {
    /// Builds the graph from `(parent, child)` pairs: `child` is a member of `parent`.
    pub fn new(edges: impl IntoIterator<Item = (i64, i64)>) -> Self {
        let mut graph = GroupGraph::default();
        for (parent, child) in edges {
            graph.children.entry(parent).or_default().push(child);
            graph.parents.entry(child).or_default().push(parent);
        }
        graph
    }

    /// `group` and every group nested in it, at any depth.
    pub fn descendants(&self, group: i64) -> HashSet<i64> {
        walk(&self.children, [group])
    }

    /// The given groups and every group they are nested in, at any depth.
    pub fn ancestors(&self, groups: impl IntoIterator<Item = i64>) -> HashSet<i64> {
        walk(&self.parents, groups)
    }
}

fn walk(next: &HashMap<i64, Vec<i64>>, start: impl IntoIterator<Item = i64>) -> HashSet<i64> {
    let mut seen = HashSet::new();
    let mut stack: Vec<i64> = start.into_iter().collect();
    while let Some(group) = stack.pop() {
        if seen.insert(group)
            && let Some(neighbours) = next.get(&group)
        {
            stack.extend(neighbours.iter().copied().filter(|n| !seen.contains(n)));
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(set: HashSet<i64>) -> Vec<i64> {
        let mut items: Vec<i64> = set.into_iter().collect();
        items.sort();
        items
    }

    #[test]
    fn nesting_is_followed_to_any_depth() {
        let graph = GroupGraph::new([(1, 2), (2, 3), (3, 4), (10, 3)]);
        assert_eq!(sorted(graph.descendants(1)), vec![1, 2, 3, 4]);
        assert_eq!(sorted(graph.ancestors([4])), vec![1, 2, 3, 4, 10]);
        assert_eq!(sorted(graph.descendants(99)), vec![99]);
    }

    #[test]
    fn a_cycle_terminates_and_gives_both_sides() {
        let graph = GroupGraph::new([(1, 2), (2, 1), (2, 2)]);
        assert_eq!(sorted(graph.descendants(1)), vec![1, 2]);
        assert_eq!(sorted(graph.descendants(2)), vec![1, 2]);
        assert_eq!(sorted(graph.ancestors([1])), vec![1, 2]);
    }
}
