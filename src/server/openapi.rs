//! The OpenAPI 3 document of the agents' API and the admin API, served at
//! `GET /openapi.json`. It is generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types' `ToSchema` derives (which read the same
//! serde attributes the wire format comes from), so it changes with them; a
//! test checks that it names every route the router serves, and the
//! schemathesis test (`tests/openapi.rs`) checks the live server against it.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, AnyOfBuilder, ArrayBuilder, ArrayItems, ObjectBuilder,
    OneOfBuilder, Schema, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::inventory::Machine;
use crate::store::{
    ApplyRecord, DpProblem, DpValidation, LockHolder, MachineRecord, ReconcileStatus, StateInfo,
    StatusMessage, StoreError, StoredObject, StoredPatchState, StoredPolicy,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "patchops site server",
        description = "The agents' API (registration, policy, inventory, status, patch \
                       states), the probes, and the admin API that `patchops plan|apply|status \
                       --site` use. See docs/server.md."
    ),
    paths(
        super::api::register,
        super::api::policy,
        super::api::inventory,
        super::api::status,
        super::api::patch_states,
        super::api::healthz,
        super::api::metrics,
        super::admin::store_call,
        serve,
    ),
    modifiers(&SecuritySchemes, &AdminReplies),
    tags(
        (name = "agents", description = "What agents call"),
        (name = "probes", description = "Health, metrics and this document; no credential"),
        (name = "admin", description = "Store operations for CI and operators"),
    )
)]
struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "probes",
    responses((status = 200, description = "The OpenAPI 3 document of this API",
        body = Object, content_type = "application/json")))]
pub async fn serve() -> Response {
    static BODY: OnceLock<Vec<u8>> = OnceLock::new();
    // The document is our own types with string keys: serializing it
    // cannot fail.
    let body = BODY.get_or_init(|| serde_json::to_vec(document()).unwrap_or_default());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.as_slice(),
    )
        .into_response()
}

/// The three bearer credentials, each checked by the routes that name it.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "enrollmentSecret",
            bearer("The site's enrollment secret (`--enroll-secret-from`)."),
        );
        components.add_security_scheme(
            "agentToken",
            bearer("The agent token that registration returned for this machine."),
        );
        components.add_security_scheme(
            "adminToken",
            bearer("The admin token (`--admin-token-from`); agent tokens do not open it."),
        );
    }
}

/// The schema of the admin API's answer, `AdminReply`: `{"ok": result}` or
/// `{"err": StoreError}`. The result's type depends on the call's `op`
/// (JSON Schema cannot tie it to the request), so `ok` is any of the
/// replies, each titled by its call.
pub struct AdminReply;

impl utoipa::PartialSchema for AdminReply {
    fn schema() -> RefOr<Schema> {
        let mut ok = AnyOfBuilder::new();
        for (op, reply) in admin_replies() {
            ok = ok.item(titled(&format!("reply to `{op}`"), reply));
        }
        OneOfBuilder::new()
            .item(only_member("ok", Schema::AnyOf(ok.build()).into()))
            .item(only_member("err", of::<StoreError>()))
            .into()
    }
}

impl ToSchema for AdminReply {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        // Everything the replies refer to.
        let mut add = |name: String, schema: RefOr<Schema>| schemas.push((name, schema));
        macro_rules! register {
            ($($t:ty),*) => {$(
                add(<$t>::name().into_owned(), <$t>::schema());
                let mut nested = Vec::new();
                <$t>::schemas(&mut nested);
                for (name, schema) in nested {
                    add(name, schema);
                }
            )*};
        }
        register!(
            StateInfo,
            StoredObject,
            ApplyRecord,
            LockHolder,
            Machine,
            MachineRecord,
            StoredPolicy,
            StatusMessage,
            StoredPatchState,
            ReconcileStatus,
            DpValidation,
            DpProblem,
            StoreError
        );
    }
}

/// Registers `AdminReply` and what it refers to (a hand-written
/// `ToSchema` is not collected from the path by itself).
struct AdminReplies;

impl Modify for AdminReplies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut schemas = Vec::new();
        AdminReply::schemas(&mut schemas);
        schemas.push(("AdminReply".into(), AdminReply::schema()));
        for (name, schema) in schemas {
            components.schemas.entry(name).or_insert(schema);
        }
    }
}

/// Each admin call's `op` and the schema of its result, as
/// `admin::store_call` answers it (a test checks that every `op` of
/// `Call` is here).
fn admin_replies() -> Vec<(&'static str, RefOr<Schema>)> {
    vec![
        ("info", of::<StateInfo>()),
        ("objects", list::<StoredObject>()),
        ("object", maybe::<StoredObject>()),
        ("commit", i64::schema()),
        ("history", list::<ApplyRecord>()),
        ("setOwner", bool::schema()),
        ("tryLock", try_lock_reply()),
        ("takeOverLock", bool::schema()),
        ("renewLock", bool::schema()),
        ("unlock", bool::schema()),
        ("lockHolder", maybe::<LockHolder>()),
        ("machines", machines_reply()),
        ("upsertMachines", list::<MachineRecord>()),
        ("revokeMachine", usize::schema()),
        ("policy", maybe::<StoredPolicy>()),
        ("latestStatus", list::<StatusMessage>()),
        ("statusForMachine", list::<StatusMessage>()),
        ("patchStates", list::<StoredPatchState>()),
        ("replacePatchStates", usize::schema()),
        ("leaseHolder", maybe::<LockHolder>()),
        ("reconcileStatus", maybe::<ReconcileStatus>()),
        ("dpValidations", list::<DpValidation>()),
    ]
}

fn of<T: ToSchema>() -> RefOr<Schema> {
    Ref::from_schema_name(T::name()).into()
}

fn list<T: ToSchema>() -> RefOr<Schema> {
    ArrayBuilder::new().items(of::<T>()).into()
}

fn maybe<T: ToSchema>() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(of::<T>())
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

/// An object with exactly one member.
fn only_member(name: &str, schema: RefOr<Schema>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property(name, schema)
        .required(name)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}

fn titled(title: &str, schema: RefOr<Schema>) -> RefOr<Schema> {
    AllOfBuilder::new().title(Some(title)).item(schema).into()
}

/// `Result<(), LockHolder>` as serde writes it: `{"Ok": null}` when taken,
/// `{"Err": holder}` when someone else holds the lock.
fn try_lock_reply() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(only_member(
            "Ok",
            ObjectBuilder::new().schema_type(Type::Null).into(),
        ))
        .item(only_member("Err", of::<LockHolder>()))
        .into()
}

/// `Vec<(u32, Machine)>`: `[[id, machine], …]`.
fn machines_reply() -> RefOr<Schema> {
    let pair = ArrayBuilder::new()
        .prefix_items([
            match u32::schema() {
                RefOr::T(schema) => schema,
                RefOr::Ref(r) => Schema::AllOf(AllOfBuilder::new().item(r).build()),
            },
            Schema::AllOf(AllOfBuilder::new().item(of::<Machine>()).build()),
        ])
        .items(ArrayItems::False)
        .min_items(Some(2))
        .max_items(Some(2));
    ArrayBuilder::new().items(pair).into()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn json() -> serde_json::Value {
        serde_json::to_value(document()).expect("document serializes")
    }

    /// The paths of a router, from its `Debug` text (axum lists each
    /// route's path there; it has no other way to enumerate them).
    fn router_paths() -> BTreeSet<String> {
        let text = format!("{:?}", super::super::api::routes());
        // The fallback router (after the routes) holds axum's own
        // catch-all paths, not routes.
        let routes = text.split("fallback_router").next().unwrap_or_default();
        let mut paths = BTreeSet::new();
        for quoted in routes.split('"').skip(1).step_by(2) {
            if quoted.starts_with('/') {
                paths.insert(quoted.to_string());
            }
        }
        paths
    }

    #[test]
    fn the_document_lists_every_route_the_router_serves() {
        let doc = json();
        let documented: BTreeSet<String> = doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .cloned()
            .collect();
        let served = router_paths();
        assert!(
            served.len() >= 9,
            "the router's paths could not be read: {served:?}"
        );
        assert_eq!(
            documented, served,
            "every route has a #[utoipa::path] in the document, and nothing else is there"
        );
    }

    #[test]
    fn every_admin_call_has_a_reply_schema() {
        let doc = json();
        let call = &doc["components"]["schemas"]["Call"];
        let ops: BTreeSet<String> = call["oneOf"]
            .as_array()
            .expect("Call is a oneOf")
            .iter()
            .map(|variant| {
                variant["properties"]["op"]["enum"][0]
                    .as_str()
                    .unwrap_or_else(|| panic!("a variant without op: {variant}"))
                    .to_string()
            })
            .collect();
        let replies: BTreeSet<String> = admin_replies()
            .into_iter()
            .map(|(op, _)| op.to_string())
            .collect();
        assert_eq!(ops, replies);
    }

    #[test]
    fn every_reference_resolves_and_credentials_are_declared() {
        let doc = json();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').expect("end of $ref")];
            assert!(schemas.contains_key(name), "unresolved $ref {name}");
        }
        let schemes = doc["components"]["securitySchemes"]
            .as_object()
            .expect("security schemes");
        for name in ["enrollmentSecret", "agentToken", "adminToken"] {
            assert_eq!(schemes[name]["scheme"], "bearer", "{name}");
        }
        assert_eq!(
            doc["paths"]["/v1/policy"]["get"]["security"][0]
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["agentToken".to_string()])
        );
    }
}
