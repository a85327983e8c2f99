//! Actions through the gRPC service: metadata, schemas, validate, plan, invoke with progress.

use super::*;

/// Set by `test_countdown` when it saw its context cancelled (the hang-up test).
static COUNTDOWN_CANCELLED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

#[async_trait]
impl Action<()> for Countdown {
    fn type_name(&self) -> &'static str {
        "test_countdown"
    }
    fn schema(&self) -> Schema {
        Schema::new(
            0,
            "counts down",
            vec![
                Attribute::required("from", Type::Number),
                Attribute::optional("mode", Type::String),
            ],
        )
    }
    async fn validate(&self, config: &Value) -> Diagnostics {
        let mut d = Diagnostics::new();
        if config.attr("from").as_i64().is_some_and(|n| n > 100) {
            d.push(Diagnostic::error("Too far", "at most 100").at_attr("from"));
        }
        d
    }
    async fn plan(&self, req: PlanActionRequest<'_, ()>) -> Diagnostics {
        let mut d = Diagnostics::new();
        if req.config.attr("mode").as_str() == Some("refuse") {
            d.push(Diagnostic::error("Refused at plan", "mode = refuse").at_attr("mode"));
        }
        d
    }
    async fn invoke(&self, req: InvokeActionRequest<'_, ()>) -> Diagnostics {
        let from = req.config.attr("from").as_i64().unwrap_or(0);
        match req.config.attr("mode").as_str() {
            Some("panic") => panic!("countdown exploded"),
            Some("hang") => {
                req.progress.send("waiting");
                req.ctx.cancel.cancelled().await;
                COUNTDOWN_CANCELLED.store(true, std::sync::atomic::Ordering::SeqCst);
                return Diagnostic::error("Cancelled", "stopped").into();
            }
            _ => {}
        }
        for i in (1..=from).rev() {
            req.progress.send(format!("{i}"));
        }
        if req.config.attr("mode").as_str() == Some("fail") {
            return Diagnostic::error("Lift-off failed", "engine 2 did not start").into();
        }
        Diagnostics::new()
    }
}

fn countdown(from: i64, mode: Option<&str>) -> Option<pb::DynamicValue> {
    let ty = Countdown.schema().value_type();
    let mode = mode.map(Value::from).unwrap_or(Value::Null);
    dv(
        &Value::object([("from", Value::int(from)), ("mode", mode)]),
        &ty,
    )
}

/// The events of one invocation: progress messages, then the completed diagnostics.
async fn invoke_action(
    svc: &ProviderService<TestProvider>,
    action_type: &str,
    config: Option<pb::DynamicValue>,
) -> (Vec<String>, Vec<pb::Diagnostic>) {
    use futures::StreamExt;
    use pb::invoke_action::event::Type;
    let mut stream = svc
        .invoke_action(Request::new(pb::invoke_action::Request {
            action_type: action_type.into(),
            config,
            client_capabilities: None,
        }))
        .await
        .unwrap()
        .into_inner();
    let mut progress = Vec::new();
    let mut completed = None;
    while let Some(event) = stream.next().await {
        match event.unwrap().r#type.expect("every event has a type") {
            Type::Progress(p) => {
                assert!(completed.is_none(), "progress after completed");
                progress.push(p.message);
            }
            Type::Completed(c) => {
                assert!(completed.is_none(), "completed twice");
                completed = Some(c.diagnostics);
            }
        }
    }
    (progress, completed.expect("the stream ends with completed"))
}

#[tokio::test]
async fn actions_are_listed_in_metadata_and_schema() {
    let svc = service().await;
    let meta = svc
        .get_metadata(Request::new(pb::get_metadata::Request {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.actions.len(), 1);
    assert_eq!(meta.actions[0].type_name, "test_countdown");
    let schema = svc
        .get_provider_schema(Request::new(pb::get_provider_schema::Request {}))
        .await
        .unwrap()
        .into_inner();
    assert!(schema.diagnostics.is_empty(), "{:?}", schema.diagnostics);
    let action = &schema.action_schemas["test_countdown"];
    let attrs = &action
        .schema
        .as_ref()
        .unwrap()
        .block
        .as_ref()
        .unwrap()
        .attributes;
    assert!(attrs.iter().any(|a| a.name == "from" && a.required));
}

#[tokio::test]
async fn invoke_streams_progress_in_order_then_completes() {
    let svc = service().await;
    let (progress, diags) = invoke_action(&svc, "test_countdown", countdown(3, None)).await;
    assert_eq!(progress, ["3", "2", "1"]);
    assert!(diags.is_empty(), "{diags:?}");
}

#[tokio::test]
async fn a_failing_action_completes_with_its_error_after_its_progress() {
    let svc = service().await;
    let (progress, diags) = invoke_action(&svc, "test_countdown", countdown(2, Some("fail"))).await;
    assert_eq!(progress, ["2", "1"]);
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].summary, "Lift-off failed");
    assert_eq!(diags[0].detail, "engine 2 did not start");
}

#[tokio::test]
async fn a_panicking_action_completes_with_a_provider_bug_and_the_service_lives_on() {
    let svc = service().await;
    let (_, diags) = invoke_action(&svc, "test_countdown", countdown(1, Some("panic"))).await;
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0].summary.contains("panicked in InvokeAction"),
        "{diags:?}"
    );
    assert!(diags[0].detail.contains("countdown exploded"));
    let (progress, diags) = invoke_action(&svc, "test_countdown", countdown(1, None)).await;
    assert_eq!(progress, ["1"]);
    assert!(diags.is_empty());
}

#[tokio::test]
async fn an_unknown_action_or_an_unknown_configuration_completes_with_an_error() {
    let svc = service().await;
    let (progress, diags) = invoke_action(&svc, "test_nope", countdown(1, None)).await;
    assert!(progress.is_empty());
    assert_eq!(diags[0].summary, "Unknown action type");
    let ty = Countdown.schema().value_type();
    let unknown = dv(
        &Value::object([("from", Value::unknown()), ("mode", Value::Null)]),
        &ty,
    );
    let (_, diags) = invoke_action(&svc, "test_countdown", unknown).await;
    assert!(diags[0].summary.contains("not known"), "{diags:?}");
}

#[tokio::test]
async fn validate_and_plan_report_with_attribute_paths() {
    let svc = service().await;
    let ty = Countdown.schema().value_type();
    let validate = |config| {
        svc.validate_action_config(Request::new(pb::validate_action_config::Request {
            type_name: "test_countdown".into(),
            config,
        }))
    };
    let missing = dv(
        &Value::object([("from", Value::Null), ("mode", Value::Null)]),
        &ty,
    );
    let r = validate(missing).await.unwrap().into_inner();
    assert_eq!(r.diagnostics.len(), 1);
    assert!(r.diagnostics[0].summary.contains("required"));
    let r = validate(countdown(101, None)).await.unwrap().into_inner();
    assert_eq!(r.diagnostics[0].summary, "Too far");
    assert_eq!(
        r.diagnostics[0].attribute,
        Some(crate::protocol::server::to_proto_path(
            &AttributePath::attr("from")
        ))
    );
    let plan = |config| {
        svc.plan_action(Request::new(pb::plan_action::Request {
            action_type: "test_countdown".into(),
            config,
            client_capabilities: None,
        }))
    };
    // Unknown values are fine at plan time.
    let unknown = dv(
        &Value::object([("from", Value::unknown()), ("mode", Value::Null)]),
        &ty,
    );
    assert!(
        plan(unknown)
            .await
            .unwrap()
            .into_inner()
            .diagnostics
            .is_empty()
    );
    let r = plan(countdown(1, Some("refuse")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.diagnostics[0].summary, "Refused at plan");
}

#[tokio::test]
async fn dropping_the_event_stream_cancels_the_action() {
    use futures::StreamExt;
    let svc = service().await;
    let mut stream = svc
        .invoke_action(Request::new(pb::invoke_action::Request {
            action_type: "test_countdown".into(),
            config: countdown(0, Some("hang")),
            client_capabilities: None,
        }))
        .await
        .unwrap()
        .into_inner();
    // The first progress event proves the action runs; then Terraform hangs up.
    assert!(stream.next().await.is_some());
    drop(stream);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !COUNTDOWN_CANCELLED.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "the action was not cancelled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[test]
fn an_action_schema_with_a_computed_attribute_is_a_provider_bug() {
    let schema = Schema::new(
        0,
        "bad",
        vec![
            Attribute::optional("a", Type::String),
            Attribute::optional_computed("b", Type::String).default_value("x"),
            Attribute::computed("c", Type::String),
        ],
    );
    let d = check_action_schema("test_bad", &schema);
    assert_eq!(d.0.len(), 1, "{d:?}");
    assert_eq!(d.0[0].attribute, Some(AttributePath::attr("c")));
    assert!(check_action_schema("test_countdown", &Countdown.schema()).is_empty());
}

#[tokio::test]
async fn an_action_block_without_config_is_an_object_of_unset_attributes() {
    let svc = service().await;
    let ty = Countdown.schema().value_type();
    // Terraform sends null for `action "t" "n" {}`: the required attribute is reported, not a
    // decoding failure.
    for config in [None, dv(&Value::Null, &ty)] {
        let r = svc
            .validate_action_config(Request::new(pb::validate_action_config::Request {
                type_name: "test_countdown".into(),
                config,
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.diagnostics.len(), 1, "{:?}", r.diagnostics);
        assert!(
            r.diagnostics[0].summary.contains("required"),
            "{:?}",
            r.diagnostics
        );
    }
    let (progress, diags) = invoke_action(&svc, "test_countdown", dv(&Value::Null, &ty)).await;
    assert!(progress.is_empty());
    assert!(diags.is_empty(), "{diags:?}");
}
