use serde_json::{json, Value};

use super::*;

fn desired(kind: Kind, name: &str, spec: Value) -> CanonicalObject {
    CanonicalObject::new(
        kind,
        name.into(),
        json!({"labels": {}, "annotations": {}}).to_string(),
        spec.to_string(),
        None,
    )
}

fn actual(kind: Kind, name: &str, spec: Value, managed: bool) -> ActualObject<'static> {
    let d = desired(kind, name, spec);
    ActualObject {
        kind,
        name: name.to_string().into(),
        metadata: d.metadata.into(),
        spec: d.spec.into(),
        hash: d.hash.into(),
        managed,
    }
}

fn protected(kind: Kind, name: &str) -> ActualObject<'static> {
    let metadata = json!({"labels": {}, "annotations": {"patchops/protect": "true"}}).to_string();
    let spec = "{}".to_string();
    ActualObject {
        kind,
        name: name.to_string().into(),
        hash: object_hash(&metadata, &spec).into(),
        metadata: metadata.into(),
        spec: spec.into(),
        managed: true,
    }
}

fn actions(plan: &Plan) -> Vec<String> {
    plan.changes
        .iter()
        .map(|c| format!("{:?} {}/{}", c.action, c.kind, c.name))
        .collect()
}

#[test]
fn classifies_and_orders_changes() {
    let d = vec![
        desired(Kind::Advertisement, "ad", json!({"collection": "c"})),
        desired(Kind::Collection, "c", json!({"comment": "new"})),
        desired(Kind::DistributionPoint, "dp", json!({})),
        desired(Kind::Package, "same", json!({})),
    ];
    let a = vec![
        actual(Kind::Collection, "c", json!({"comment": "old"}), true),
        actual(Kind::Package, "same", json!({}), true),
        actual(Kind::Package, "gone", json!({}), true),
        actual(Kind::Advertisement, "gone-ad", json!({}), true),
    ];
    let p = plan(
        &d,
        &Desired::default(),
        &a,
        &PlanOptions {
            allow_destroy: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        actions(&p),
        vec![
            "Create DistributionPoint/dp",
            "Update Collection/c",
            "Create Advertisement/ad",
            "Delete Advertisement/gone-ad",
            "Delete Package/gone"
        ]
    );
    assert_eq!(
        p.summary(),
        Summary {
            add: 2,
            change: 1,
            destroy: 2
        }
    );
    assert_eq!(p.unchanged, 1);
    let update = &p.changes[1];
    assert_eq!(
        update.fields,
        vec![FieldChange {
            path: "spec.comment".into(),
            before: Some(json!("old")),
            after: Some(json!("new"))
        }]
    );
}

#[test]
fn an_unchanged_site_has_no_changes() {
    let d = vec![desired(Kind::Package, "p", json!({"x": 1}))];
    let a = vec![actual(Kind::Package, "p", json!({"x": 1}), true)];
    let p = plan(&d, &Desired::default(), &a, &PlanOptions::default()).unwrap();
    assert!(p.is_empty());
    assert_eq!(p.summary(), Summary::default());
}

#[test]
fn unmanaged_objects_are_adopted_or_left_alone() {
    let d = vec![desired(Kind::Package, "p", json!({"x": 1}))];
    let a = vec![
        actual(Kind::Package, "p", json!({"x": 1}), false),
        actual(Kind::Package, "theirs", json!({}), false),
    ];
    let p = plan(&d, &Desired::default(), &a, &PlanOptions::default()).unwrap();
    assert_eq!(actions(&p), vec!["Adopt Package/p"]);
    assert_eq!(p.unmanaged, vec![(Kind::Package, "theirs".to_string())]);
}

#[test]
fn protected_objects_are_never_deleted() {
    let a = vec![
        protected(Kind::Collection, "keep"),
        actual(Kind::Package, "p", json!({}), true),
    ];
    let d = vec![desired(Kind::Package, "p", json!({}))];
    let err = plan(
        &d,
        &Desired::default(),
        &a,
        &PlanOptions {
            allow_destroy: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        Refusal::Protected(vec![(Kind::Collection, "keep".into())])
    );
}

#[test]
fn the_deletion_guard_trips_on_many_or_most() {
    let many: Vec<ActualObject> = (0..40)
        .map(|i| actual(Kind::Package, &format!("p{i:02}"), json!({}), true))
        .collect();
    let keep: Vec<CanonicalObject> = (11..40)
        .map(|i| desired(Kind::Package, &format!("p{i:02}"), json!({})))
        .collect();
    let err = plan(&keep, &Desired::default(), &many, &PlanOptions::default()).unwrap_err();
    assert_eq!(
        err,
        Refusal::TooManyDeletions {
            deletions: 11,
            managed: 40
        }
    );
    let ten: Vec<CanonicalObject> = (10..40)
        .map(|i| desired(Kind::Package, &format!("p{i:02}"), json!({})))
        .collect();
    assert_eq!(
        plan(&ten, &Desired::default(), &many, &PlanOptions::default())
            .unwrap()
            .summary()
            .destroy,
        10
    );

    let few: Vec<ActualObject> = (0..4)
        .map(|i| actual(Kind::Package, &format!("p{i}"), json!({}), true))
        .collect();
    let one = vec![desired(Kind::Package, "p0", json!({}))];
    assert_eq!(
        plan(&one, &Desired::default(), &few, &PlanOptions::default()).unwrap_err(),
        Refusal::TooManyDeletions {
            deletions: 3,
            managed: 4
        }
    );
    let allowed = plan(
        &one,
        &Desired::default(),
        &few,
        &PlanOptions {
            allow_destroy: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(allowed.summary().destroy, 3);
}

#[test]
fn targets_narrow_the_plan() {
    let d = vec![
        desired(Kind::Package, "a", json!({})),
        desired(Kind::Package, "b", json!({})),
    ];
    let options = PlanOptions {
        targets: vec![(Kind::Package, "b".into())],
        ..Default::default()
    };
    assert_eq!(
        actions(&plan(&d, &Desired::default(), &[], &options).unwrap()),
        vec!["Create Package/b"]
    );
    let unknown = PlanOptions {
        targets: vec![(Kind::Package, "zzz".into())],
        ..Default::default()
    };
    assert_eq!(
        plan(&d, &Desired::default(), &[], &unknown).unwrap_err(),
        Refusal::UnknownTarget("Package/zzz".into())
    );
}

#[test]
fn dependents_follow_packages_and_collections() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/site");
    let report = crate::validate::validate_dir(&root, crate::validate::Options::default()).unwrap();
    let model = &report.desired;
    let names = |kind, name| {
        dependents::of(model, kind, name)
            .into_iter()
            .map(|d| format!("{}/{}", d.kind, d.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(Kind::Package, "MS Security Updates"),
        vec![
            "Advertisement/MS Security Updates",
            "Advertisement/MS Security Updates (Pre-production)",
            "Advertisement/MS Security Updates Sync",
            "SyncHost/sms01",
            "SoftwareUpdatePackage/Security Updates 2026-11",
        ]
    );
    // The pre-production collection is excluded by production: its own
    // advertisements and production's scan are all touched.
    assert_eq!(
        names(Kind::Collection, "MS Security Updates (Pre-production)"),
        vec![
            "Collection/MS Security Updates",
            "Advertisement/MS Security Updates",
            "Advertisement/MS Security Updates (Pre-production)",
            "SoftwareUpdatePackage/Security Updates 2026-11"
        ]
    );
    assert_eq!(names(Kind::DistributionPoint, "dp-branch").len(), 3);
}

#[test]
fn canonical_form_ignores_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let write = |text: &str| {
        std::fs::write(dir.path().join("site.yaml"), "apiVersion: patchops/v1\nkind: Site\nmetadata: {name: LAB}\nspec: {siteCode: LAB, siteServer: sms01}\n").unwrap();
        std::fs::write(dir.path().join("c.yaml"), text).unwrap();
        let report =
            crate::validate::validate_dir(dir.path(), crate::validate::Options::default()).unwrap();
        assert!(report.is_valid(), "{:?}", report.diagnostics);
        canonical_objects(&report.desired, &Default::default(), &Default::default())
    };
    let a = write("apiVersion: patchops/v1\nkind: Collection\nmetadata: {name: C}\nspec:\n  membership:\n    - query: OS.NAME LIKE 'Microsoft%'\n    - direct: [WKS-2, wks-1]\n  evaluation: {every: 60m}\n");
    let b = write("apiVersion: patchops/v1\nkind: Collection\nmetadata: {name: C}\nspec:\n  comment: ''\n  membership:\n    - query: os.name like 'Microsoft%'\n    - direct: [wks-1, wks-2]\n  evaluation: {every: 1h}\n  purpose: general\n");
    assert_eq!(a, b);
}

#[test]
fn a_stored_object_that_does_not_match_its_hash_is_an_update() {
    let d = vec![desired(Kind::Package, "p", json!({"priority": "high"}))];
    let mut edited = actual(Kind::Package, "p", json!({"priority": "high"}), true);
    // Edited behind its hash: the hash still says "high".
    edited.spec = json!({"priority": "low"}).to_string().into();
    let plan = plan_of(&d, &[edited.clone()]);
    assert_eq!(actions(&plan), vec!["Update Package/p"]);
    let change = &plan.changes[0];
    assert!(change.stored_object_corrupt);
    assert_eq!(
        change
            .fields
            .iter()
            .map(|f| (f.path.as_str(), f.before.clone(), f.after.clone()))
            .collect::<Vec<_>>(),
        vec![("spec.priority", Some(json!("low")), Some(json!("high")))]
    );
    // Intact objects are unchanged, and an ordinary update is not marked.
    let intact = actual(Kind::Package, "p", json!({"priority": "high"}), true);
    let plan = plan_of(&d, &[intact]);
    assert!(plan.changes.is_empty() && plan.unchanged == 1);
    let older = actual(Kind::Package, "p", json!({"priority": "low"}), true);
    assert!(!plan_of(&d, &[older]).changes[0].stored_object_corrupt);
    // Only the text differs (the same JSON written another way): still
    // not what its hash says, still rewritten.
    let mut respaced = actual(Kind::Package, "p", json!({"priority": "high"}), true);
    respaced.spec = "{ \"priority\": \"high\" }".into();
    let plan = plan_of(&d, &[respaced]);
    assert!(plan.changes[0].stored_object_corrupt && plan.changes[0].fields.is_empty());
    // A deletion of a damaged object says so too.
    let plan = plan_of(&[], &[edited]);
    assert!(plan.changes[0].action == Action::Delete && plan.changes[0].stored_object_corrupt);
}

fn plan_of(desired: &[CanonicalObject], actual: &[ActualObject]) -> Plan {
    let options = PlanOptions {
        allow_destroy: true,
        ..Default::default()
    };
    plan(desired, &Desired::default(), actual, &options).unwrap()
}
