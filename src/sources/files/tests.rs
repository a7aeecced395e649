use super::*;
use std::fs;

const MINIMAL: &str = "domain: carls-model.com\nimage: qarlm/server\nrun_id: r1\n";

fn manifest(build_id: &str) -> String {
    format!("{MINIMAL}build_id: {build_id}\n")
}

fn write(dir: &Path, relative: &str, text: &str) -> PathBuf {
    let path = dir.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

fn build_id(declarations: &FileDeclarations, name: &str) -> String {
    declarations.models[name].spec().unwrap().build_id.clone()
}

fn names(declarations: &FileDeclarations) -> Vec<&str> {
    declarations.models.keys().map(String::as_str).collect()
}

#[test]
fn a_valid_manifest_declares_its_model_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "carls_model.yml", &manifest("b1"));
    let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
    assert_eq!(names(&found), ["carls_model"]);
    let model = &found.models["carls_model"];
    assert_eq!(build_id(&found, "carls_model"), "b1");
    assert_eq!(model.files(), [path.as_path()]);
    assert_eq!(model.stale, None);
    assert!(model.problems().is_empty());
    assert!(found.broken.is_empty());
}

#[test]
fn an_invalid_manifest_is_reported_under_its_name_or_file_stem() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "typo.yml",
        &format!("{}scael: 3\n", manifest("b1")),
    );
    write(dir.path(), "named.yml", "name: real_name\nport: eighty\n");
    write(dir.path(), "listed.yml", "name: [a, b]\n");
    let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
    assert_eq!(names(&found), ["listed", "real_name", "typo"]);
    let Declaration::Invalid { origin, errors } = &found.models["typo"].declaration else {
        panic!("{:?}", found.models["typo"]);
    };
    assert_eq!(origin.path, dir.path().join("typo.yml"));
    assert_eq!(
        errors[0].to_string(),
        "scael: unknown field: did you mean scale?"
    );
    let problem = &found.models["typo"].problems()[0];
    assert!(
        problem.ends_with("typo.yml: scael: unknown field: did you mean scale?"),
        "{problem}"
    );
    assert!(matches!(
        found.models["real_name"].declaration,
        Declaration::Invalid { .. }
    ));
}

#[test]
fn unnamed_invalid_documents_of_a_multi_document_file_are_each_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "team.yml",
        &format!(
            "{}---\n{}---\nname: a\n{}",
            manifest("x"),
            manifest("y"),
            manifest("z")
        ),
    );
    let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
    assert_eq!(names(&found), ["a", "team#1", "team#2"]);
    assert!(found.models["a"].spec().is_some());
    assert!(matches!(
        found.models["team#2"].declaration,
        Declaration::Invalid { .. }
    ));
}

#[test]
fn two_documents_of_one_file_declaring_one_name_conflict() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "team.yml",
        &format!(
            "name: m\n{}---\nname: m\n{}",
            manifest("b1"),
            manifest("b2")
        ),
    );
    let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
    let Declaration::Conflict { origins } = &found.models["m"].declaration else {
        panic!("{:?}", found.models["m"]);
    };
    assert_eq!(
        origins.iter().map(|o| o.doc).collect::<Vec<_>>(),
        [Some(1), Some(2)]
    );
    assert_eq!(found.models["m"].spec(), None);
    let problem = &found.models["m"].problems()[0];
    assert!(problem.contains("team.yml#1 and "), "{problem}");
    assert!(
        problem.contains("team.yml#2: none of them is applied"),
        "{problem}"
    );
}

#[test]
fn two_files_declaring_one_name_conflict_and_each_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a/m.yml", &manifest("b1"));
    let other = write(
        dir.path(),
        "b/copy.yml",
        &format!("name: m\n{}", manifest("b2")),
    );
    let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
    let model = &found.models["m"];
    assert!(matches!(model.declaration, Declaration::Conflict { .. }));
    assert_eq!(model.files(), [dir.path().join("a/m.yml"), other.clone()]);
    let problem = &model.problems()[0];
    assert!(
        problem.contains(&format!("{}", dir.path().join("a/m.yml").display())),
        "{problem}"
    );
    assert!(
        problem.contains(&format!("{}", other.display())),
        "{problem}"
    );

    fs::remove_file(&other).unwrap();
    let resolved = scan(dir.path(), &found, &Fill::default());
    assert_eq!(build_id(&resolved, "m"), "b1");
    assert_eq!(
        changed_names(&found, &resolved),
        BTreeSet::from(["m".to_string()])
    );
}

#[test]
fn a_file_that_breaks_keeps_declaring_its_last_good_content_as_stale() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "team.yml",
        &format!(
            "name: a\n{}---\nname: b\n{}",
            manifest("a1"),
            manifest("b1")
        ),
    );
    write(dir.path(), "c.yml", &manifest("c1"));
    let good = scan(dir.path(), &FileDeclarations::default(), &Fill::default());

    fs::write(&path, "name: a\ndomain: [unclosed\n").unwrap();
    let broken = scan(dir.path(), &good, &Fill::default());
    assert_eq!(names(&broken), ["a", "b", "c"]);
    assert_eq!(build_id(&broken, "a"), "a1");
    let error = &broken.broken[&path];
    assert!(
        error.starts_with(&format!("{}: not valid YAML: ", path.display())),
        "{error}"
    );
    assert_eq!(broken.models["a"].stale.as_ref(), Some(error));
    assert_eq!(broken.models["b"].stale.as_ref(), Some(error));
    assert_eq!(broken.models["c"].stale, None);
    assert!(broken.models["a"].problems()[0].ends_with("using the file's last readable content"));
    assert_eq!(
        changed_names(&good, &broken),
        BTreeSet::from(["a".to_string(), "b".to_string()])
    );

    let still_broken = scan(dir.path(), &broken, &Fill::default());
    assert_eq!(
        still_broken, broken,
        "the last good content is carried from scan to scan"
    );

    fs::write(&path, format!("name: a\n{}", manifest("a2"))).unwrap();
    let fixed = scan(dir.path(), &still_broken, &Fill::default());
    assert_eq!(names(&fixed), ["a", "c"]);
    assert_eq!(build_id(&fixed, "a"), "a2");
    assert_eq!(fixed.models["a"].stale, None);
    assert!(fixed.broken.is_empty());
}

#[test]
fn a_broken_file_keeps_a_conflict_it_was_part_of() {
    let dir = tempfile::tempdir().unwrap();
    let first = write(dir.path(), "m.yml", &manifest("b1"));
    write(
        dir.path(),
        "other.yml",
        &format!("name: m\n{}", manifest("b2")),
    );
    let conflict = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
    fs::write(&first, "{").unwrap();
    let broken = scan(dir.path(), &conflict, &Fill::default());
    assert!(matches!(
        broken.models["m"].declaration,
        Declaration::Conflict { .. }
    ));
    assert!(broken.models["m"].stale.is_some());
}

#[test]
fn a_broken_file_with_no_previous_content_declares_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "m.yml", "a: [\n");
    let big = write(dir.path(), "big.yml", &"#".repeat(1024 * 1024 + 1));
    let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
    assert!(found.models.is_empty());
    assert_eq!(found.broken.keys().collect::<Vec<_>>(), [&big, &path]);
    assert!(
        found.broken[&big].contains("limited to 1 MiB"),
        "{}",
        found.broken[&big]
    );
}

#[test]
fn deleting_a_broken_file_withdraws_its_stale_declarations() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "m.yml", &manifest("b1"));
    let good = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
    fs::write(&path, "[").unwrap();
    let broken = scan(dir.path(), &good, &Fill::default());
    fs::remove_file(&path).unwrap();
    let gone = scan(dir.path(), &broken, &Fill::default());
    assert!(gone.models.is_empty());
    assert!(gone.broken.is_empty());
    assert_eq!(gone.files().count(), 0);
}

#[test]
fn hidden_temporary_and_swap_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        ".m.yml",
        ".m.yml.swp",
        "m.yml~",
        "4913",
        "m.yml.tmp",
        "#m.yml#",
        ".hidden/x.yml",
        "notes.txt",
    ] {
        write(dir.path(), name, "not: [yaml\n");
    }
    let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
    assert!(found.models.is_empty(), "{:?}", found.models);
    assert!(found.broken.is_empty(), "{:?}", found.broken);
}

#[test]
fn nested_directories_are_read_and_yaml_extensions_both_count() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "top.yml", &manifest("t"));
    write(dir.path(), "team/a/deep.yaml", &manifest("d"));
    write(dir.path(), "team/b/other.yml", &manifest("o"));
    let found = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
    assert_eq!(names(&found), ["deep", "other", "top"]);
    assert_eq!(found.files().count(), 3);
}

#[test]
fn a_missing_directory_declares_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let found = scan(
        &dir.path().join("absent"),
        &FileDeclarations::default(),
        &Fill::default(),
    );
    assert_eq!(found, FileDeclarations::default());
}

#[test]
fn a_deleted_subdirectory_withdraws_its_models() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "keep.yml", &manifest("k"));
    write(dir.path(), "sub/gone.yml", &manifest("g"));
    let before = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
    fs::remove_dir_all(dir.path().join("sub")).unwrap();
    let after = scan(dir.path(), &before, &Fill::default());
    assert_eq!(names(&after), ["keep"]);
    assert_eq!(
        changed_names(&before, &after),
        BTreeSet::from(["gone".to_string()])
    );
}

#[test]
fn changed_names_lists_every_kind_of_change_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "same.yml", &manifest("s"));
    write(dir.path(), "edited.yml", &manifest("e1"));
    write(dir.path(), "removed.yml", &manifest("r"));
    write(dir.path(), "breaks.yml", &manifest("b"));
    write(dir.path(), "moves.yml", &manifest("m"));
    let old = scan(dir.path(), &FileDeclarations::default(), &Fill::default());

    write(dir.path(), "edited.yml", &manifest("e2"));
    fs::remove_file(dir.path().join("removed.yml")).unwrap();
    write(dir.path(), "added.yml", &manifest("a"));
    write(
        dir.path(),
        "breaks.yml",
        &format!("{}port: x\n", manifest("b")),
    );
    fs::remove_file(dir.path().join("moves.yml")).unwrap();
    write(
        dir.path(),
        "sub/moved.yml",
        &format!("name: moves\n{}", manifest("m")),
    );
    let new = scan(dir.path(), &old, &Fill::default());

    let expected: BTreeSet<String> = ["added", "breaks", "edited", "moves", "removed"]
        .map(String::from)
        .into();
    assert_eq!(changed_names(&old, &new), expected);
    assert!(changed_names(&new, &new).is_empty());
}

#[test]
fn a_directory_that_cannot_be_listed_keeps_its_files_declared_as_stale() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("manifests");
    write(&dir, "m.yml", &manifest("b1"));
    let good = scan(&dir, &FileDeclarations::default(), &Fill::default());
    // A file where the directory was cannot be listed (and, unlike permissions, this
    // holds for every user).
    fs::remove_dir_all(&dir).unwrap();
    fs::write(&dir, "").unwrap();
    let unlistable = scan(&dir, &good, &Fill::default());
    assert_eq!(build_id(&unlistable, "m"), "b1");
    let error = unlistable.models["m"].stale.clone().unwrap();
    assert!(error.contains("cannot list directory"), "{error}");
    assert_eq!(unlistable.broken[&dir], error);
}

#[cfg(unix)]
#[test]
fn an_unreadable_file_keeps_its_models_declared_as_stale() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "m.yml", &manifest("b1"));
    let good = scan(dir.path(), &FileDeclarations::default(), &Fill::default());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::read(&path).is_ok() {
        // Running with privileges that ignore permissions: nothing to observe.
        return;
    }
    let unreadable = scan(dir.path(), &good, &Fill::default());
    assert_eq!(build_id(&unreadable, "m"), "b1");
    assert!(
        unreadable.broken[&path].contains("cannot read"),
        "{:?}",
        unreadable.broken
    );
}
