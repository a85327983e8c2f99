//! Actions (Terraform >= 1.14): `ValidateActionConfig`, `PlanAction` and `InvokeAction`, whose
//! answer is a stream: one `progress` event per message the action sends, then exactly one
//! `completed` event with its diagnostics. Terraform 1.15 prints each progress message as it
//! arrives (`Action action.<type>.<name> (triggered by CLI): <message>`) and fails the apply
//! on an error in `completed`.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{Out, ProviderService, Res, WithDiagnostics, decode, guarded, to_proto_diags};
use crate::protocol::diagnostics::{Diagnostic, Diagnostics};
use crate::protocol::framework::{
    self, Action, Context, InvokeActionRequest, PlanActionRequest, Progress, Provider,
};
use crate::protocol::proto::tfplugin6 as pb;
use crate::protocol::types::Type;
use crate::protocol::value::Value;

type Event = pb::invoke_action::Event;

impl<P: Provider> ProviderService<P> {
    pub(super) async fn serve_validate_action_config(
        &self,
        request: Request<pb::validate_action_config::Request>,
    ) -> Res<pb::validate_action_config::Response> {
        let req = request.into_inner();
        let resp = self
            .run("ValidateActionConfig", &req.type_name, async {
                let Out((), diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.action(&req.type_name));
                    let config = tri!(diags, config_of(entry.ty.clone(), req.config.as_ref()));
                    let checks =
                        framework::validate_config(&entry.schema, &config, &self.context(None));
                    diags.extend(checks);
                    diags.extend(entry.imp.validate(&config).await);
                    Out((), diags)
                }
                .await;
                pb::validate_action_config::Response::from_diagnostics(diags)
            })
            .await;
        Ok(Response::new(resp))
    }

    pub(super) async fn serve_plan_action(
        &self,
        request: Request<pb::plan_action::Request>,
    ) -> Res<pb::plan_action::Response> {
        let req = request.into_inner();
        let resp = self
            .run("PlanAction", &req.action_type, async {
                let Out((), diags) = async {
                    let mut diags = Diagnostics::new();
                    let entry = tri!(diags, self.action(&req.action_type));
                    let config = tri!(diags, config_of(entry.ty.clone(), req.config.as_ref()));
                    let data = tri!(diags, self.provider_data());
                    let ctx = self.context(None);
                    diags.extend(
                        entry
                            .imp
                            .plan(PlanActionRequest {
                                config: &config,
                                provider: &*data,
                                ctx: &ctx,
                            })
                            .await,
                    );
                    Out((), diags)
                }
                .await;
                pb::plan_action::Response::from_diagnostics(diags)
            })
            .await;
        Ok(Response::new(resp))
    }

    /// Answers at once with the event stream; the action runs in a task of its own that
    /// forwards its progress messages as they come and ends the stream with `completed`.
    /// A request that cannot start (unknown type, undecodable or unknown configuration,
    /// provider not configured) is a stream of one `completed` event with the error.
    pub(super) async fn serve_invoke_action(
        &self,
        request: Request<pb::invoke_action::Request>,
    ) -> Res<BoxStream<Event>> {
        let req = request.into_inner();
        let span = self.span("InvokeAction", &req.action_type);
        let (events, stream) = mpsc::unbounded_channel::<Result<Event, Status>>();
        match self.prepare_invoke(&req) {
            Err(d) => {
                let _ = events.send(Ok(completed(&d.into())));
            }
            Ok((action, data, config)) => {
                let ctx = self.context(None);
                let type_name = req.action_type.clone();
                tokio::spawn(invoke(action, data, config, ctx, type_name, events).instrument(span));
            }
        }
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            stream,
        ))))
    }

    #[allow(clippy::type_complexity)]
    fn prepare_invoke(
        &self,
        req: &pb::invoke_action::Request,
    ) -> Result<(Arc<dyn Action<P::Data>>, Arc<P::Data>, Value), Diagnostic> {
        let entry = self.action(&req.action_type)?;
        let config = config_of(entry.ty.clone(), req.config.as_ref())?;
        if !config.is_wholly_known() {
            return Err(Diagnostic::provider_bug(
                "Action configuration not known",
                format!(
                    "Terraform invoked {} with a configuration that still holds unknown values",
                    req.action_type
                ),
            ));
        }
        let data = self.provider_data()?;
        Ok((entry.imp.clone(), data, config))
    }
}

/// Runs the action, forwarding its progress as events, and ends with `completed`. If Terraform
/// stops reading (the stream is dropped) the action's context is cancelled, and its end is
/// still awaited so it can clean up.
async fn invoke<D: Send + Sync + 'static>(
    action: Arc<dyn Action<D>>,
    data: Arc<D>,
    config: Value,
    ctx: Context,
    type_name: String,
    events: mpsc::UnboundedSender<Result<Event, Status>>,
) {
    let (progress, mut messages) = Progress::channel();
    let cancel = ctx.cancel.clone();
    let work = guarded("InvokeAction", &type_name, async {
        action
            .invoke(InvokeActionRequest {
                config: &config,
                provider: &*data,
                ctx: &ctx,
                progress: &progress,
            })
            .await
    });
    tokio::pin!(work);
    let mut hung_up = false;
    let diags: Diagnostics = loop {
        tokio::select! {
            biased;
            Some(message) = messages.recv() => {
                if events.send(Ok(progress_event(message))).is_err() && !hung_up {
                    hung_up = true;
                    cancel.cancel();
                }
            }
            diags = &mut work => break diags,
            _ = events.closed(), if !hung_up => {
                tracing::warn!("Terraform stopped reading the action's events; cancelling it");
                hung_up = true;
                cancel.cancel();
            }
        }
    };
    while let Ok(message) = messages.try_recv() {
        let _ = events.send(Ok(progress_event(message)));
    }
    let _ = events.send(Ok(completed(&diags)));
}

/// The action's configuration as an object: an `action` block without a `config` block reaches
/// the provider as null (seen with Terraform 1.15.5), which is every attribute unset.
fn config_of(ty: Type, config: Option<&pb::DynamicValue>) -> Result<Value, Diagnostic> {
    let value = decode(config, &ty, "configuration")?;
    Ok(if value.is_null() {
        Value::null_object(&ty)
    } else {
        value
    })
}

fn progress_event(message: String) -> Event {
    Event {
        r#type: Some(pb::invoke_action::event::Type::Progress(
            pb::invoke_action::event::Progress { message },
        )),
    }
}

fn completed(diags: &Diagnostics) -> Event {
    Event {
        r#type: Some(pb::invoke_action::event::Type::Completed(
            pb::invoke_action::event::Completed {
                diagnostics: to_proto_diags(diags),
            },
        )),
    }
}
