//! The layering check: no import cycle between top-level modules.
//!
//! A cycle between two top-level modules means neither can be understood,
//! tested or moved without the other, so the crate's module graph must stay
//! a DAG. This test reads `src/` as text (no build tooling needed), collects
//! every `crate::<module>` reference outside test code, and fails naming
//! each cycle with the lines that close it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One reference from a file of module `from` to module `to`.
#[derive(Debug, Clone)]
struct Edge {
    to: String,
    file: PathBuf,
    line: usize,
}

/// The top-level modules: each `src/<name>.rs` and `src/<name>/` except the
/// crate roots.
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(src).expect("src/ is readable") {
        let path = entry.expect("src/ entry").path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let is_module = path.is_dir() || path.extension().is_some_and(|ext| ext == "rs");
        if is_module && name != "lib" && name != "main" {
            modules.insert(name);
        }
    }
    modules
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("directory is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Test code may reach anywhere (it exercises the whole crate), so files
/// that exist only for tests and a file's trailing `#[cfg(test)] mod` are
/// left out.
fn is_test_file(path: &Path) -> bool {
    let name = path.file_stem().unwrap().to_string_lossy();
    name == "tests" || name.ends_with("_tests")
}

/// The lines of `text` that are not test code: everything before the first
/// `#[cfg(test)]` that is followed by a `mod` item.
fn non_test_lines(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    for (index, line) in lines.iter().enumerate() {
        if line.trim() == "#[cfg(test)]" {
            let next = lines.get(index + 1).map(|l| l.trim()).unwrap_or("");
            if next.starts_with("mod ") || next.starts_with("pub mod ") {
                end = index;
                break;
            }
        }
    }
    lines[..end].to_vec()
}

/// The modules a line names through `crate::`: `crate::a::b`, and each head
/// of a group `crate::{a, b::c}` (a group may span lines, so `open_group`
/// carries the state of one between lines).
fn referenced_modules(line: &str, open_group: &mut bool, found: &mut Vec<String>) {
    let code = match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    };
    let mut rest = code;
    if *open_group {
        match rest.find('}') {
            Some(close) => {
                group_heads(&rest[..close], found);
                *open_group = false;
                rest = &rest[close + 1..];
            }
            None => {
                group_heads(rest, found);
                return;
            }
        }
    }
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
        let after = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            rest = after;
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            match group.find('}') {
                Some(close) => {
                    group_heads(&group[..close], found);
                    rest = &group[close + 1..];
                }
                None => {
                    group_heads(group, found);
                    *open_group = true;
                    return;
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
            rest = after;
        }
    }
}

/// The first path segment of each item of a `use` group's contents (nested
/// groups count once, by their head).
fn group_heads(contents: &str, found: &mut Vec<String>) {
    let mut depth = 0usize;
    let mut item = String::new();
    let flush = |item: &mut String, found: &mut Vec<String>| {
        let head: String = item
            .trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !head.is_empty() && head != "self" {
            found.push(head);
        }
        item.clear();
    };
    for c in contents.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => flush(&mut item, found),
            _ if depth == 0 => item.push(c),
            _ => {}
        }
    }
    flush(&mut item, found);
}

fn module_graph(src: &Path) -> BTreeMap<String, Vec<Edge>> {
    let modules = top_level_modules(src);
    let mut graph: BTreeMap<String, Vec<Edge>> =
        modules.iter().map(|m| (m.clone(), Vec::new())).collect();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        let owner = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if !modules.contains(&owner) || is_test_file(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source file is readable");
        let mut open_group = false;
        for (index, line) in non_test_lines(&text).into_iter().enumerate() {
            let mut found = Vec::new();
            referenced_modules(line, &mut open_group, &mut found);
            for to in found {
                if to != owner && modules.contains(&to) {
                    graph.get_mut(&owner).unwrap().push(Edge {
                        to,
                        file: relative.to_path_buf(),
                        line: index + 1,
                    });
                }
            }
        }
    }
    graph
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, Vec<Edge>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, Vec<Edge>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        components: Vec<Vec<String>>,
    }
    fn visit<'g>(state: &mut State<'g>, node: &'g str) {
        let next = state.index.len();
        state.index.insert(node, next);
        state.low.insert(node, next);
        state.stack.push(node);
        state.on_stack.insert(node);
        for edge in &state.graph[node] {
            let to = edge.to.as_str();
            if !state.index.contains_key(to) {
                visit(state, to);
                let low = state.low[to].min(state.low[node]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(to) {
                let low = state.index[to].min(state.low[node]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            loop {
                let member = state.stack.pop().unwrap();
                state.on_stack.remove(member);
                component.push(member.to_owned());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.components.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.components
}

fn describe(graph: &BTreeMap<String, Vec<Edge>>, component: &[String]) -> String {
    let members: BTreeSet<&str> = component.iter().map(String::as_str).collect();
    let mut text = format!("cycle between {}:\n", component.join(", "));
    for from in component {
        let mut seen = BTreeSet::new();
        for edge in &graph[from] {
            if members.contains(edge.to.as_str()) && seen.insert(edge.to.as_str()) {
                text.push_str(&format!(
                    "  {from} -> {} (src/{}:{})\n",
                    edge.to,
                    edge.file.display(),
                    edge.line
                ));
            }
        }
    }
    text
}

#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    let found = cycles(&graph);
    let report: String = found.iter().map(|c| describe(&graph, c)).collect();
    assert!(found.is_empty(), "{report}");
}

/// Wire and record types sit at the bottom: they depend on no other
/// module of the crate, so every layer can speak them.
#[test]
fn wire_and_record_types_depend_on_nothing_above_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    for leaf in ["manifest", "records", "untrusted"] {
        let edges = graph.get(leaf).map(Vec::as_slice).unwrap_or_default();
        let above: Vec<String> = edges
            .iter()
            .map(|e| format!("{}:{} → {}", e.file.display(), e.line, e.to))
            .collect();
        assert!(above.is_empty(), "{leaf} depends on {above:?}");
    }
}

#[test]
fn references_are_read_from_paths_and_groups() {
    let mut found = Vec::new();
    let mut open = false;
    referenced_modules(
        "use crate::{model::Site, store::{Store, StoreError}, self};",
        &mut open,
        &mut found,
    );
    referenced_modules(
        "let x = crate::plan::diff(a); // crate::cli",
        &mut open,
        &mut found,
    );
    referenced_modules("use crate::{", &mut open, &mut found);
    assert!(open);
    referenced_modules("    render::untrusted,", &mut open, &mut found);
    referenced_modules("    eval::Evaluator };", &mut open, &mut found);
    assert!(!open);
    referenced_modules("macro_crate::x; $crate::y", &mut open, &mut found);
    assert_eq!(found, ["model", "store", "plan", "render", "eval"]);
}

#[test]
fn a_two_module_loop_is_a_cycle_and_a_chain_is_not() {
    let edge = |to: &str| Edge {
        to: to.to_owned(),
        file: PathBuf::from("x.rs"),
        line: 1,
    };
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), vec![edge("b")]);
    graph.insert("b".to_owned(), vec![edge("c")]);
    graph.insert("c".to_owned(), vec![]);
    assert!(cycles(&graph).is_empty());
    graph.get_mut("c").unwrap().push(edge("a"));
    assert_eq!(cycles(&graph), [["a", "b", "c"]]);
}
