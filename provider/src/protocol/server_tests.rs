//! The RPC shells with a small provider of test types: msgpack in, framework rules, msgpack out.
//! Later issues' resources rely on exactly these behaviours.

use std::sync::Arc;

use async_trait::async_trait;
use tonic::Request;

use super::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use super::framework::*;
use super::msgpack;
use super::proto::tfplugin6 as pb;
use super::proto::tfplugin6::provider_server::Provider as _;
use super::schema::{Attribute, Schema};
use super::server::ProviderService;
use super::types::Type;
use super::value::Value;

struct TestProvider;
struct Thing;
/// A resource with every default, `MoveResourceState`'s refusal among them.
struct Plain;
struct Panicky;
struct Token;
struct Countdown;

#[async_trait]
impl Provider for TestProvider {
    type Data = ();
    fn name(&self) -> &'static str {
        "test"
    }
    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "test",
            vec![Attribute::optional("endpoint", Type::String)],
        )
    }
    async fn configure(&self, _req: ConfigureRequest<'_>) -> (Option<()>, Diagnostics) {
        (Some(()), Diagnostics::new())
    }
    fn data_sources(&self) -> Vec<Arc<dyn DataSource<()>>> {
        vec![Arc::new(Panicky)]
    }
    fn resources(&self) -> Vec<Arc<dyn Resource<()>>> {
        vec![Arc::new(Thing), Arc::new(Plain)]
    }
    fn ephemeral_resources(&self) -> Vec<Arc<dyn EphemeralResource<()>>> {
        vec![Arc::new(Token)]
    }
    fn actions(&self) -> Vec<Arc<dyn Action<()>>> {
        vec![Arc::new(Countdown)]
    }

    fn list_resources(&self) -> Vec<Arc<dyn ListResource<()>>> {
        vec![Arc::new(ThingList)]
    }
}

struct ThingList;

#[async_trait]
impl ListResource<()> for ThingList {
    fn type_name(&self) -> &'static str {
        "test_thing"
    }
    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "things",
            vec![Attribute::required("prefix", Type::String)],
        )
    }
    async fn list(&self, req: ListRequest<'_, ()>) -> (Vec<ListResult>, Diagnostics) {
        let prefix = req
            .config
            .attr("prefix")
            .as_str()
            .unwrap_or_default()
            .to_string();
        let results = (1..=3)
            .take(usize::try_from(req.limit).unwrap_or(0))
            .map(|n| {
                let id = format!("{prefix}{n}");
                ListResult {
                    identity: Value::object([("id", Value::string(&id)), ("region", Value::Null)]),
                    display_name: format!("thing {id}"),
                    resource: Some(thing(&[
                        ("id", Value::string(&id)),
                        ("name", Value::string("n")),
                        ("version", Value::int(1)),
                    ])),
                }
            })
            .collect();
        (results, Diagnostics::new())
    }
}

#[async_trait]
impl Resource<()> for Thing {
    fn type_name(&self) -> &'static str {
        "test_thing"
    }
    fn schema(&self) -> Schema {
        Schema::new(
            1,
            "a thing",
            vec![
                Attribute::computed("id", Type::String).use_state_for_unknown(),
                Attribute::required("name", Type::String).requires_replace(),
                Attribute::optional("size", Type::Number),
                Attribute::computed("version", Type::Number),
                Attribute::optional("secret_wo", Type::String)
                    .sensitive()
                    .write_only(),
                timeouts_attribute(&["create"]),
            ],
        )
    }
    async fn create(&self, req: ApplyRequest<'_, ()>, resp: &mut ApplyResponse) {
        let mut state = req.planned_state.clone();
        let name = req.config.attr("name").as_str().unwrap_or_default();
        state.set_attr("id", format!("id-{name}").into());
        state.set_attr("version", Value::int(1));
        // A careless resource copying config: the framework must null the write-only value.
        state.set_attr("secret_wo", req.config.attr("secret_wo").clone());
        if name == "sloppy" {
            state.set_attr("size", Value::int(99));
        }
        resp.new_state = state;
    }
    async fn read(&self, req: ReadRequest<'_, ()>, resp: &mut ReadResponse) {
        if req.current_state.attr("name").as_str() == Some("gone") {
            resp.new_state = Value::Null;
        }
    }
    async fn update(&self, req: ApplyRequest<'_, ()>, resp: &mut ApplyResponse) {
        let mut state = req.planned_state.clone();
        let v = req.prior_state.attr("version").as_i64().unwrap_or(0);
        state.set_attr("version", Value::int(v + 1));
        resp.new_state = state;
    }
    async fn delete(&self, _req: DeleteRequest<'_, ()>) -> Diagnostics {
        Diagnostics::new()
    }
    fn import(&self) -> Import {
        Import::Passthrough("id")
    }
    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(IdentitySchema {
            version: 1,
            attributes: vec![
                IdentityAttribute {
                    name: "id",
                    ty: Type::String,
                    import: ForImport::Required,
                    description: "the id",
                },
                IdentityAttribute {
                    name: "region",
                    ty: Type::String,
                    import: ForImport::Optional,
                    description: "where it lives",
                },
            ],
        })
    }
    fn identity(&self, req: IdentityRequest<'_, ()>) -> Option<Value> {
        // Only the id can be read from state; the region comes from the stored identity.
        let id = req.state.attr("id").as_str()?;
        Some(Value::object([
            ("id", Value::string(id)),
            ("region", Value::Null),
        ]))
    }
    fn import_id(&self, identity: &Value, _provider: &()) -> Result<String, Diagnostic> {
        Ok(identity.attr("id").as_str().unwrap_or_default().to_string())
    }
    fn upgrade_identity(&self, version: i64, raw: &serde_json::Value) -> Result<Value, Diagnostic> {
        // Identity v0 called the id "key".
        assert_eq!(version, 0);
        Ok(Value::object([
            ("id", Value::string(raw["key"].as_str().unwrap_or_default())),
            ("region", Value::Null),
        ]))
    }
    fn upgrade_state(&self, version: i64, raw: &serde_json::Value) -> Result<Value, Diagnostic> {
        // v0 called the name "title".
        assert_eq!(version, 0);
        let mut state = Value::null_object(&self.schema().value_type());
        state.set_attr("id", raw["id"].as_str().unwrap_or_default().into());
        state.set_attr("name", raw["title"].as_str().unwrap_or_default().into());
        state.set_attr("version", Value::int(1));
        Ok(state)
    }
    /// A `test_legacy` (`{id, label, secret}`) becomes a thing named after its label.
    fn move_state(&self, req: MoveStateRequest<'_>) -> Result<MovedState, Diagnostics> {
        if req.source_type_name != "test_legacy" {
            return Err(move_not_supported(self.type_name(), &req).into());
        }
        let mut state = Value::null_object(&self.schema().value_type());
        let raw = req.source_state;
        state.set_attr("id", raw["id"].as_str().unwrap_or_default().into());
        state.set_attr("name", raw["label"].as_str().unwrap_or_default().into());
        state.set_attr("version", Value::int(1));
        // Careless: the framework must null a write-only value.
        state.set_attr(
            "secret_wo",
            raw["secret"].as_str().unwrap_or_default().into(),
        );
        Ok(MovedState {
            state,
            private: req.source_private.to_vec(),
        })
    }
}

#[async_trait]
impl Resource<()> for Plain {
    fn type_name(&self) -> &'static str {
        "test_plain"
    }
    fn schema(&self) -> Schema {
        Schema::new(0, "plain", vec![Attribute::computed("id", Type::String)])
    }
    async fn create(&self, _req: ApplyRequest<'_, ()>, _resp: &mut ApplyResponse) {}
    async fn read(&self, _req: ReadRequest<'_, ()>, _resp: &mut ReadResponse) {}
    async fn update(&self, _req: ApplyRequest<'_, ()>, _resp: &mut ApplyResponse) {}
    async fn delete(&self, _req: DeleteRequest<'_, ()>) -> Diagnostics {
        Diagnostics::new()
    }
}

#[async_trait]
impl DataSource<()> for Panicky {
    fn type_name(&self) -> &'static str {
        "test_panicky"
    }
    fn schema(&self) -> Schema {
        Schema::new(0, "panics", vec![Attribute::computed("x", Type::String)])
    }
    async fn read(&self, _req: ReadDataRequest<'_, ()>, _resp: &mut ReadDataResponse) {
        panic!("boom");
    }
}

#[async_trait]
impl EphemeralResource<()> for Token {
    fn type_name(&self) -> &'static str {
        "test_token"
    }
    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "a token",
            vec![
                Attribute::optional("subject", Type::String),
                Attribute::computed("token", Type::String).sensitive(),
            ],
        )
    }
    async fn open(&self, req: OpenRequest<'_, ()>, resp: &mut OpenResponse) {
        resp.result.set_attr("token", "t0ken".into());
        if req.config.attr("subject").as_str() == Some("rewrite") {
            // Not allowed: a configured value must come back as configured.
            resp.result.set_attr("subject", "other".into());
        }
        resp.private = b"handle".to_vec();
    }
}

fn thing_type() -> Type {
    Thing.schema().value_type()
}

fn dv(v: &Value, ty: &Type) -> Option<pb::DynamicValue> {
    Some(pb::DynamicValue {
        msgpack: msgpack::encode(v, ty).unwrap(),
        json: vec![],
    })
}

fn un_dv(d: &Option<pb::DynamicValue>, ty: &Type) -> Value {
    msgpack::decode(&d.as_ref().unwrap().msgpack, ty).unwrap()
}

fn thing(pairs: &[(&str, Value)]) -> Value {
    let mut v = Value::null_object(&thing_type());
    for (k, val) in pairs {
        v.set_attr(k, val.clone());
    }
    v
}

async fn service() -> ProviderService<TestProvider> {
    let svc = ProviderService::new(TestProvider, "registry.terraform.io/test/test");
    let resp = svc
        .configure_provider(Request::new(pb::configure_provider::Request {
            terraform_version: "1.15.5".into(),
            config: dv(
                &Value::object([("endpoint", Value::Null)]),
                &TestProvider.schema().value_type(),
            ),
            client_capabilities: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.diagnostics.is_empty());
    svc
}

async fn plan(
    svc: &ProviderService<TestProvider>,
    prior: &Value,
    config: &Value,
) -> pb::plan_resource_change::Response {
    let ty = thing_type();
    // Terraform's proposed new state: config values, prior values for computed attributes
    // the config leaves null.
    let mut proposed = config.clone();
    if !prior.is_null() {
        for k in ["id", "version"] {
            proposed.set_attr(k, prior.attr(k).clone());
        }
    }
    svc.plan_resource_change(Request::new(pb::plan_resource_change::Request {
        type_name: "test_thing".into(),
        prior_state: dv(prior, &ty),
        proposed_new_state: dv(&proposed, &ty),
        config: dv(config, &ty),
        ..Default::default()
    }))
    .await
    .unwrap()
    .into_inner()
}

async fn apply(
    svc: &ProviderService<TestProvider>,
    prior: &Value,
    planned: &Value,
    config: &Value,
) -> pb::apply_resource_change::Response {
    let ty = thing_type();
    svc.apply_resource_change(Request::new(pb::apply_resource_change::Request {
        type_name: "test_thing".into(),
        prior_state: dv(prior, &ty),
        planned_state: dv(planned, &ty),
        config: dv(config, &ty),
        ..Default::default()
    }))
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test]
async fn create_then_an_unchanged_plan_is_a_no_op_and_a_rename_replaces() {
    let svc = service().await;
    let ty = thing_type();
    let config = thing(&[("name", "a".into()), ("secret_wo", "s3cret".into())]);
    let p = plan(&svc, &Value::Null, &config).await;
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    let planned = un_dv(&p.planned_state, &ty);
    assert!(planned.attr("id").is_unknown());
    assert!(planned.attr("secret_wo").is_null());

    let a = apply(&svc, &Value::Null, &planned, &config).await;
    assert!(a.diagnostics.is_empty(), "{:?}", a.diagnostics);
    let state = un_dv(&a.new_state, &ty);
    assert_eq!(state.attr("id"), &Value::from("id-a"));
    assert!(
        state.attr("secret_wo").is_null(),
        "write-only never reaches state"
    );

    // Same config again: the plan equals the prior state exactly (Terraform's NoOp).
    let p = plan(&svc, &state, &config).await;
    let again = un_dv(&p.planned_state, &ty);
    assert!(again.same(&state), "{again:?}");
    assert!(p.requires_replace.is_empty());

    // A new name forces replacement, reported at `name`.
    let renamed = thing(&[("name", "b".into())]);
    let p = plan(&svc, &state, &renamed).await;
    assert_eq!(p.requires_replace.len(), 1);
    assert_eq!(
        p.requires_replace[0],
        super::server::to_proto_path(&AttributePath::attr("name"))
    );
    // An in-place change keeps the id and marks the version unknown.
    let resized = thing(&[("name", "a".into()), ("size", Value::int(3))]);
    let planned = un_dv(&plan(&svc, &state, &resized).await.planned_state, &ty);
    assert_eq!(planned.attr("id"), &Value::from("id-a"));
    assert!(planned.attr("version").is_unknown());
    let updated = un_dv(
        &apply(&svc, &state, &planned, &resized).await.new_state,
        &ty,
    );
    assert_eq!(updated.attr("version"), &Value::int(2));
}

#[tokio::test]
async fn a_result_that_contradicts_the_plan_is_reported_with_its_path() {
    let svc = service().await;
    let ty = thing_type();
    let config = thing(&[("name", "sloppy".into())]);
    let planned = un_dv(&plan(&svc, &Value::Null, &config).await.planned_state, &ty);
    let a = apply(&svc, &Value::Null, &planned, &config).await;
    assert_eq!(a.diagnostics.len(), 1);
    assert!(a.diagnostics[0].summary.contains("inconsistent result"));
    assert_eq!(
        a.diagnostics[0].attribute,
        Some(super::server::to_proto_path(&AttributePath::attr("size")))
    );
}

#[tokio::test]
async fn read_of_a_vanished_object_returns_null_and_import_passes_the_id() {
    let svc = service().await;
    let ty = thing_type();
    let gone = thing(&[
        ("id", "x".into()),
        ("name", "gone".into()),
        ("version", Value::int(1)),
    ]);
    let r = svc
        .read_resource(Request::new(pb::read_resource::Request {
            type_name: "test_thing".into(),
            current_state: dv(&gone, &ty),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty());
    assert!(un_dv(&r.new_state, &ty).is_null());

    let i = svc
        .import_resource_state(Request::new(pb::import_resource_state::Request {
            type_name: "test_thing".into(),
            id: "id-imported".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let state = un_dv(&i.imported_resources[0].state, &ty);
    assert_eq!(state.attr("id"), &Value::from("id-imported"));
    assert!(state.attr("name").is_null());
}

#[tokio::test]
async fn state_upgrades_same_version_older_version_and_newer_version() {
    let svc = service().await;
    let ty = thing_type();
    let upgrade = |version: i64, json: &str| {
        svc.upgrade_resource_state(Request::new(pb::upgrade_resource_state::Request {
            type_name: "test_thing".into(),
            version,
            raw_state: Some(pb::RawState {
                json: json.as_bytes().to_vec(),
                flatmap: Default::default(),
            }),
        }))
    };
    // Same version; an attribute added since is filled with null.
    let r = upgrade(1, r#"{"id":"x","name":"a","version":1}"#)
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    let s = un_dv(&r.upgraded_state, &ty);
    assert_eq!(s.attr("name"), &Value::from("a"));
    assert!(s.attr("size").is_null());
    // Older version: the resource's upgrader.
    let r = upgrade(0, r#"{"id":"x","title":"old"}"#)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        un_dv(&r.upgraded_state, &ty).attr("name"),
        &Value::from("old")
    );
    // Newer than we know: a clear error, not a guess.
    let r = upgrade(7, r#"{"id":"x"}"#).await.unwrap().into_inner();
    assert!(r.diagnostics[0].summary.contains("newer provider version"));
}

#[tokio::test]
async fn moves_across_types_are_advertised_mapped_by_the_target_or_refused() {
    let svc = service().await;
    let meta = svc
        .get_metadata(Request::new(pb::get_metadata::Request {}))
        .await
        .unwrap()
        .into_inner();
    assert!(meta.server_capabilities.unwrap().move_resource_state);
    let schema = svc
        .get_provider_schema(Request::new(pb::get_provider_schema::Request {}))
        .await
        .unwrap()
        .into_inner();
    assert!(schema.server_capabilities.unwrap().move_resource_state);

    let mv = |source: &str, target: &str, json: &str| {
        svc.move_resource_state(Request::new(pb::move_resource_state::Request {
            source_provider_address: "registry.terraform.io/test/legacy".into(),
            source_type_name: source.into(),
            source_schema_version: 0,
            source_state: Some(pb::RawState {
                json: json.as_bytes().to_vec(),
                flatmap: Default::default(),
            }),
            target_type_name: target.into(),
            source_private: b"p".to_vec(),
            ..Default::default()
        }))
    };
    // Mapped by the target; its write-only value nulled; private passed on.
    let r = mv(
        "test_legacy",
        "test_thing",
        r#"{"id":"x","label":"a","secret":"s"}"#,
    )
    .await
    .unwrap()
    .into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    let s = un_dv(&r.target_state, &thing_type());
    assert_eq!(s.attr("name"), &Value::from("a"));
    assert!(s.attr("secret_wo").is_null());
    assert_eq!(r.target_private, b"p");
    // A source the target does not map, and a target with the default: refusals naming both.
    for (source, target) in [("test_other", "test_thing"), ("test_legacy", "test_plain")] {
        let r = mv(source, target, r#"{"id":"x"}"#)
            .await
            .unwrap()
            .into_inner();
        assert!(r.target_state.is_none());
        assert_eq!(r.diagnostics[0].summary, "Move not supported");
        assert!(
            r.diagnostics[0].detail.contains(source),
            "{:?}",
            r.diagnostics
        );
        assert!(r.diagnostics[0].detail.contains(target));
        assert!(r.diagnostics[0].detail.contains("`import` block"));
    }
    // An unknown target, and a source state that is not JSON.
    let r = mv("test_legacy", "test_nope", "{}")
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics[0].summary.contains("Unknown resource type"));
    let r = mv("test_legacy", "test_thing", "{not json")
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.diagnostics[0]
            .summary
            .contains("Unable to read the moved state")
    );
}

#[tokio::test]
async fn a_panic_in_a_handler_becomes_an_error_diagnostic() {
    let svc = service().await;
    let ty = Panicky.schema().value_type();
    let r = svc
        .read_data_source(Request::new(pb::read_data_source::Request {
            type_name: "test_panicky".into(),
            config: dv(&Value::null_object(&ty), &ty),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.diagnostics.len(), 1);
    assert!(
        r.diagnostics[0]
            .summary
            .contains("panicked in ReadDataSource")
    );
    assert!(r.diagnostics[0].detail.contains("boom"));
    // The service keeps working.
    let again = svc
        .get_provider_schema(Request::new(pb::get_provider_schema::Request {}))
        .await
        .unwrap()
        .into_inner();
    assert!(again.resource_schemas.contains_key("test_thing"));
}

#[tokio::test]
async fn ephemeral_results_may_only_set_computed_attributes() {
    let svc = service().await;
    let ty = Token.schema().value_type();
    let open = |subject: &str| {
        svc.open_ephemeral_resource(Request::new(pb::open_ephemeral_resource::Request {
            type_name: "test_token".into(),
            config: dv(
                &Value::object([("subject", subject.into()), ("token", Value::Null)]),
                &ty,
            ),
            client_capabilities: None,
        }))
    };
    let r = open("ci").await.unwrap().into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    assert_eq!(un_dv(&r.result, &ty).attr("token"), &Value::from("t0ken"));
    assert_eq!(r.private.as_deref(), Some(&b"handle"[..]));
    let r = open("rewrite").await.unwrap().into_inner();
    assert_eq!(
        r.diagnostics[0].summary,
        "Provider produced an invalid object"
    );
    assert!(r.diagnostics[0].detail.contains("subject"));
    assert!(r.result.is_none());
}

#[tokio::test]
async fn write_only_values_are_refused_when_terraform_cannot_handle_them() {
    let svc = service().await;
    let ty = thing_type();
    let config = thing(&[("name", "a".into()), ("secret_wo", "x".into())]);
    let r = svc
        .validate_resource_config(Request::new(pb::validate_resource_config::Request {
            type_name: "test_thing".into(),
            config: dv(&config, &ty),
            client_capabilities: Some(pb::ClientCapabilities {
                write_only_attributes_allowed: false,
                ..Default::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.diagnostics.len(), 1);
    assert!(r.diagnostics[0].summary.contains("Write-only"));
}

mod actions;
mod identity;

/// A sensitive write-only attribute reaches Terraform as both: states written since 0.1.0
/// record its null path in `sensitive_attributes`, and a schema without the flag would make
/// Terraform plan a phantom in-place update for each of them (see `to_proto_attribute`).
#[tokio::test]
async fn sensitive_write_only_attributes_stay_sensitive_to_terraform() {
    let svc = service().await;
    let r = svc
        .get_provider_schema(Request::new(pb::get_provider_schema::Request {}))
        .await
        .unwrap()
        .into_inner();
    let attr = |schema: &pb::Schema, name: &str| {
        schema
            .block
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .find(|a| a.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no attribute {name}"))
    };
    let secret = attr(&r.resource_schemas["test_thing"], "secret_wo");
    assert!(secret.write_only && secret.sensitive, "{secret:?}");
    let token = attr(&r.ephemeral_resource_schemas["test_token"], "token");
    assert!(token.sensitive, "{token:?}");
}
