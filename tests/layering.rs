//! The crate's folders import each other one way only (`src/lib.rs` is the map): a cycle
//! between two concerns is how a lower layer starts reaching into the daemon again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules of `src/` (folders and single files), `lib.rs`/`main.rs` aside.
fn modules(src: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(src)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| {
            e.file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .filter(|m| m != "lib" && m != "main")
        .collect();
    out.sort();
    out
}

fn rust_files(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap().filter_map(Result::ok) {
            rust_files(&e.path(), out);
        }
    } else if path.extension().is_some_and(|x| x == "rs") {
        out.push(path.to_path_buf());
    }
}

/// Which other top-level modules a module's code (comments aside) names as `crate::x`.
fn imports(src: &Path, module: &str, all: &[String]) -> BTreeSet<String> {
    let mut files = Vec::new();
    let dir = src.join(module);
    let root = if dir.is_dir() {
        dir
    } else {
        src.join(format!("{module}.rs"))
    };
    rust_files(&root, &mut files);
    let mut out = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name != module && all.contains(&name) {
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn no_two_folders_of_the_crate_import_each_other_even_through_others() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let all = modules(&src);
    let graph: BTreeMap<String, BTreeSet<String>> = all
        .iter()
        .map(|m| (m.clone(), imports(&src, m, &all)))
        .collect();
    // Depth-first search for a cycle; report it as a path.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in &graph[m] {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in &all {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}\n{graph:#?}", cycle.join(" -> "));
        }
    }
    // The lower layers stay below the daemon.
    for lower in ["zone", "provision", "dkim", "diagnose", "dns"] {
        assert!(
            !graph[lower].contains("daemon"),
            "{lower} imports daemon: {graph:#?}"
        );
    }
}
