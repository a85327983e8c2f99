//! Resource identity and list resources through the gRPC service.

use super::*;

fn identity_type() -> Type {
    Thing.identity_schema().unwrap().value_type()
}

fn identity_data(v: &Value) -> Option<pb::ResourceIdentityData> {
    Some(pb::ResourceIdentityData {
        identity_data: dv(v, &identity_type()),
    })
}

fn un_identity(d: &Option<pb::ResourceIdentityData>) -> Value {
    un_dv(
        &d.as_ref().expect("an identity").identity_data,
        &identity_type(),
    )
}

fn ident(id: &str, region: Option<&str>) -> Value {
    Value::object([
        ("id", Value::string(id)),
        ("region", Value::opt_string(region)),
    ])
}

#[tokio::test]
async fn identity_schemas_list_the_types_that_have_one_with_their_import_rules() {
    let svc = service().await;
    let r = svc
        .get_resource_identity_schemas(Request::new(Default::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty());
    assert_eq!(
        r.identity_schemas.len(),
        1,
        "only test_thing has an identity"
    );
    let s = &r.identity_schemas["test_thing"];
    assert_eq!(s.version, 1);
    let attrs: Vec<_> = s
        .identity_attributes
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                a.required_for_import,
                a.optional_for_import,
                String::from_utf8(a.r#type.clone()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attrs,
        [
            ("id", true, false, "\"string\"".to_string()),
            ("region", false, true, "\"string\"".to_string())
        ]
    );
}

#[tokio::test]
async fn identity_follows_the_object_through_create_read_update_and_replace() {
    let svc = service().await;
    let ty = thing_type();
    let config = thing(&[("name", "a".into())]);
    // Create: the id is unknown in the plan, so no identity is planned (Terraform allows that).
    let p = plan(&svc, &Value::Null, &config).await;
    assert!(p.planned_identity.is_none());
    let planned = un_dv(&p.planned_state, &ty);
    let a = apply(&svc, &Value::Null, &planned, &config).await;
    assert!(a.diagnostics.is_empty(), "{:?}", a.diagnostics);
    assert_eq!(un_identity(&a.new_identity), ident("id-a", None));
    let state = un_dv(&a.new_state, &ty);

    // Read keeps what the stored identity has and the state cannot say (region), and is
    // worked out from state when Terraform sends none (first refresh after an upgrade).
    let read = |current: Option<Value>| {
        let svc = &svc;
        let state = state.clone();
        async move {
            svc.read_resource(Request::new(pb::read_resource::Request {
                type_name: "test_thing".into(),
                current_state: dv(&state, &thing_type()),
                current_identity: current.as_ref().and_then(identity_data),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
        }
    };
    let r = read(Some(ident("id-a", Some("eu")))).await;
    assert_eq!(un_identity(&r.new_identity), ident("id-a", Some("eu")));
    let r = read(None).await;
    assert_eq!(un_identity(&r.new_identity), ident("id-a", None));

    // An in-place update keeps the stored identity.
    let bigger = thing(&[("name", "a".into()), ("size", Value::int(2))]);
    let mut proposed = bigger.clone();
    for k in ["id", "version"] {
        proposed.set_attr(k, state.attr(k).clone());
    }
    let p = svc
        .plan_resource_change(Request::new(pb::plan_resource_change::Request {
            type_name: "test_thing".into(),
            prior_state: dv(&state, &ty),
            proposed_new_state: dv(&proposed, &ty),
            config: dv(&bigger, &ty),
            prior_identity: identity_data(&ident("id-a", Some("eu"))),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    assert!(p.requires_replace.is_empty());
    assert_eq!(un_identity(&p.planned_identity), ident("id-a", Some("eu")));
    let a = svc
        .apply_resource_change(Request::new(pb::apply_resource_change::Request {
            type_name: "test_thing".into(),
            prior_state: dv(&state, &ty),
            planned_state: p.planned_state.clone(),
            config: dv(&bigger, &ty),
            planned_identity: p.planned_identity.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(un_identity(&a.new_identity), ident("id-a", Some("eu")));

    // A replacement is another object: the stored identity is not carried over.
    let renamed = thing(&[("name", "b".into())]);
    let mut proposed = renamed.clone();
    for k in ["id", "version"] {
        proposed.set_attr(k, state.attr(k).clone());
    }
    let p = svc
        .plan_resource_change(Request::new(pb::plan_resource_change::Request {
            type_name: "test_thing".into(),
            prior_state: dv(&state, &ty),
            proposed_new_state: dv(&proposed, &ty),
            config: dv(&renamed, &ty),
            prior_identity: identity_data(&ident("id-a", Some("eu"))),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!p.requires_replace.is_empty());
    if let Some(planned) = &p.planned_identity {
        assert!(un_identity(&Some(planned.clone())).attr("region").is_null());
    }

    // Destroy plans no identity.
    let p = svc
        .plan_resource_change(Request::new(pb::plan_resource_change::Request {
            type_name: "test_thing".into(),
            prior_state: dv(&state, &ty),
            proposed_new_state: dv(&Value::Null, &ty),
            config: dv(&Value::Null, &ty),
            prior_identity: identity_data(&ident("id-a", Some("eu"))),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(p.planned_identity.is_none());
}

#[tokio::test]
async fn import_by_identity_names_the_object_by_its_id_and_returns_the_identity() {
    let svc = service().await;
    let ty = thing_type();
    let i = svc
        .import_resource_state(Request::new(pb::import_resource_state::Request {
            type_name: "test_thing".into(),
            identity: identity_data(&ident("id-x", Some("eu"))),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(i.diagnostics.is_empty(), "{:?}", i.diagnostics);
    let imported = &i.imported_resources[0];
    assert_eq!(un_dv(&imported.state, &ty).attr("id"), &Value::from("id-x"));
    assert_eq!(un_identity(&imported.identity), ident("id-x", Some("eu")));

    // By ID: no identity yet (the read that follows works it out).
    let i = svc
        .import_resource_state(Request::new(pb::import_resource_state::Request {
            type_name: "test_thing".into(),
            id: "id-y".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(i.imported_resources[0].identity.is_none());

    // A required attribute left null is refused, naming it.
    let i = svc
        .import_resource_state(Request::new(pb::import_resource_state::Request {
            type_name: "test_thing".into(),
            identity: identity_data(&Value::object([
                ("id", Value::Null),
                ("region", Value::string("eu")),
            ])),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(i.imported_resources.is_empty());
    assert_eq!(i.diagnostics[0].summary, "Incomplete import identity");
    assert!(
        i.diagnostics[0].detail.contains("needs id"),
        "{}",
        i.diagnostics[0].detail
    );
}

#[tokio::test]
async fn stored_identities_are_decoded_upgraded_or_refused_when_newer() {
    let svc = service().await;
    let up = |version: i64, json: &str| {
        let svc = &svc;
        let json = json.as_bytes().to_vec();
        async move {
            svc.upgrade_resource_identity(Request::new(pb::upgrade_resource_identity::Request {
                type_name: "test_thing".into(),
                version,
                raw_identity: Some(pb::RawState {
                    json,
                    ..Default::default()
                }),
            }))
            .await
            .unwrap()
            .into_inner()
        }
    };
    let r = up(1, r#"{"id":"id-a","region":"eu"}"#).await;
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    assert_eq!(un_identity(&r.upgraded_identity), ident("id-a", Some("eu")));
    let r = up(0, r#"{"key":"id-old"}"#).await;
    assert_eq!(un_identity(&r.upgraded_identity), ident("id-old", None));
    let r = up(2, r#"{"id":"id-a"}"#).await;
    assert!(r.upgraded_identity.is_none());
    assert_eq!(
        r.diagnostics[0].summary,
        "Resource instance managed by a newer provider version"
    );
    let r = up(1, "not json").await;
    assert_eq!(r.diagnostics[0].summary, "Unable to read stored identity");
}

#[test]
fn resolve_identity_prefers_the_object_and_fills_gaps_from_the_stored_identity() {
    let schema = Thing.identity_schema().unwrap();
    assert_eq!(
        resolve_identity(&schema, Some(ident("a", None)), &ident("a", Some("eu"))),
        ident("a", Some("eu"))
    );
    assert_eq!(
        resolve_identity(&schema, Some(ident("b", None)), &ident("a", Some("eu"))),
        ident("b", Some("eu"))
    );
    assert_eq!(
        resolve_identity(&schema, None, &ident("a", Some("eu"))),
        ident("a", Some("eu"))
    );
    assert!(resolve_identity(&schema, None, &Value::Null).is_null());
    assert_eq!(
        resolve_identity(&schema, Some(ident("a", None)), &Value::Null),
        ident("a", None)
    );
}

// ------------------------------------------------------------------- list resources

#[tokio::test]
async fn list_resources_are_announced_and_stream_identities_and_objects() {
    use futures::StreamExt;
    let svc = service().await;
    let meta = svc
        .get_metadata(Request::new(Default::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.list_resources[0].type_name, "test_thing");
    let schema = svc
        .get_provider_schema(Request::new(Default::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(schema.list_resource_schemas.contains_key("test_thing"));

    let config_ty = ThingList.schema().value_type();
    let list = |include: bool, limit: i64, type_name: &'static str| {
        let svc = &svc;
        let config = dv(
            &Value::object([("prefix", Value::string("p-"))]),
            &config_ty,
        );
        async move {
            let stream = svc
                .list_resource(Request::new(pb::list_resource::Request {
                    type_name: type_name.into(),
                    config,
                    include_resource_object: include,
                    limit,
                }))
                .await
                .unwrap()
                .into_inner();
            stream
                .map(|e| e.unwrap())
                .collect::<Vec<pb::list_resource::Event>>()
                .await
        }
    };
    let events = list(true, 2, "test_thing").await;
    assert_eq!(events.len(), 2, "the limit is honoured");
    assert_eq!(un_identity(&events[0].identity), ident("p-1", None));
    assert_eq!(events[1].display_name, "thing p-2");
    let object = un_dv(&events[0].resource_object, &thing_type());
    assert_eq!(object.attr("id"), &Value::from("p-1"));
    let events = list(false, 10, "test_thing").await;
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.resource_object.is_none()));
    let events = list(false, 10, "test_nothing").await;
    assert_eq!(events.len(), 1);
    assert!(events[0].identity.is_none());
    assert_eq!(
        events[0].diagnostic[0].summary,
        "Unknown list resource type"
    );

    let v = svc
        .validate_list_resource_config(Request::new(pb::validate_list_resource_config::Request {
            type_name: "test_thing".into(),
            config: dv(&Value::object([("prefix", Value::Null)]), &config_ty),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        v.diagnostics[0].summary,
        "Missing configuration for required attribute"
    );
}
