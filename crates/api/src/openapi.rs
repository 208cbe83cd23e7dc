//! The route table and the OpenAPI spec, built together.
//!
//! Every route is registered through utoipa-axum's `routes!`, which takes the path and
//! method from the handler's `#[utoipa::path]`: the attribute that documents a route is the
//! one that mounts it, so the spec cannot miss a route.

use std::sync::Arc;

use axum::{Extension, Json};
use utoipa::openapi::OpenApi as Spec;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;
use crate::{
    auth, compat, generator, groups, guard, health, metrics, records, timestamp, topics, tracker,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Freshet",
        description = "HTTP API of Freshet's stream services: the unique-IP tracker, the \
                       device-event generator, the login guard and timestamp normalisation; and \
                       the cluster's topics, records and consumer groups. Errors are \
                       `{\"error\": \"...\"}` with a fitting status. Routes tagged `compatible` \
                       keep the exact paths and shapes of the old generator, tracker nodes and \
                       login service that Freshet replaces.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "tracker", description = "Exact distinct device IPs, per node and across nodes"),
        (name = "generator", description = "Background jobs sending device events; kept in the \
                                            memory of the process running them, so a restart \
                                            forgets them"),
        (name = "guard", description = "Accounts, logins and brute-force blocking"),
        (name = "topics", description = "Topics and their records, over the Kafka protocol"),
        (name = "groups", description = "Consumer groups, their members and lag"),
        (name = "timestamp", description = "Timestamp normalisation"),
        (name = "compatible", description = "Endpoints of the old generator, tracker nodes \
                and login service, at the same paths with the same JSON shapes; the few \
                differences that remain, and why, are in docs/REFERENCE.md"),
        (name = "meta", description = "Health, metrics and this spec"),
        (name = "auth", description = "Sign-in, when the server has users (`freshet users add`). \
                Then every route but `/healthz` and `POST /api/v1/auth/token` needs \
                `Authorization: Basic` or a token from that route as `Authorization: Bearer`, \
                and with `--authorizer acl` the right each route's 403 names (Kafka ACLs, as on \
                the Kafka listener). Without users nothing is checked."),
    ),
    modifiers(&AdminTokenScheme)
)]
struct ApiDoc;

/// Declares the bearer token the admin routes name in their `security`.
struct AdminTokenScheme;

impl utoipa::Modify for AdminTokenScheme {
    fn modify(&self, spec: &mut Spec) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = spec.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token (--admin-token or FRESHET_ADMIN_TOKEN)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every route with its documentation, before state and layers are added.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes())
        .merge(timestamp::routes())
        .merge(tracker::routes())
        .merge(generator::routes())
        .merge(guard::routes())
        .merge(topics::routes())
        .merge(records::routes())
        .merge(groups::routes())
        .merge(compat::routes())
        .merge(health::routes())
        .merge(metrics::routes())
        .routes(routes!(openapi_json))
}

/// A required parameter whose schema is built in code. utoipa's `schema_with` on a parameter
/// drops `required` and the description, which a path parameter (always required) and a
/// required query parameter cannot do without.
pub(crate) fn required_parameter(
    name: &str,
    location: utoipa::openapi::path::ParameterIn,
    description: &str,
    schema: impl Into<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>>,
) -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::path::ParameterBuilder;
    use utoipa::openapi::Required;
    ParameterBuilder::new()
        .name(name)
        .parameter_in(location)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// The spec of every route [`crate::app`] serves.
pub fn spec() -> Spec {
    let (_, spec) = router().split_for_parts();
    with_version(spec)
}

/// The version is this crate's (the workspace's), set here rather than left to the derive so
/// it is visibly the one `freshet --version` prints.
pub(crate) fn with_version(mut spec: Spec) -> Spec {
    spec.info.version = env!("CARGO_PKG_VERSION").to_string();
    document_body_timeouts(&mut spec);
    auth::document(&mut spec);
    spec
}

/// Every operation that takes a body may answer 408 when the body is sent too slowly (the
/// router's body layer, see [`crate::server`]); added here rather than to each route so that a
/// new route cannot miss it.
fn document_body_timeouts(spec: &mut Spec) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let timeout = ResponseBuilder::new()
        .description("The body did not arrive within the body timeout; the connection is closed")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ApiError")))
                .build(),
        )
        .build();
    for item in spec.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            if operation.request_body.is_some() {
                operation
                    .responses
                    .responses
                    .entry("408".to_string())
                    .or_insert_with(|| timeout.clone().into());
            }
        }
    }
}

/// The spec shared by every request for it.
#[derive(Clone)]
pub(crate) struct SharedSpec(Arc<Spec>);

impl std::fmt::Debug for SharedSpec {
    // utoipa's types implement Debug only with its `debug` feature; the title is enough here.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedSpec")
            .field(&self.0.info.title)
            .finish()
    }
}

impl SharedSpec {
    pub(crate) fn layer(spec: Spec) -> Extension<SharedSpec> {
        Extension(SharedSpec(Arc::new(spec)))
    }
}

/// The OpenAPI 3.1 spec of this API
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "This document", content_type = "application/json"),
    )
)]
pub(crate) async fn openapi_json(Extension(SharedSpec(spec)): Extension<SharedSpec>) -> Json<Spec> {
    // A few kilobytes, rendered per request: cheaper to keep than a cached copy that could
    // differ from the spec the router was built with.
    Json(Spec::clone(&spec))
}
