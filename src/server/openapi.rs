//! The OpenAPI 3 document of the agents' API and the admin API, served at
//! `GET /openapi.json`. It is generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types' `ToSchema` derives (which read the same
//! serde attributes the wire format comes from), so it changes with them; a
//! test checks that it names every route the router serves, and the
//! schemathesis test (`tests/it/openapi.rs`) checks the live server against it.

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
use crate::records::{
    ApplyRecord, DpProblem, DpValidation, LockHolder, MachineRecord, ReconcileStatus, StateInfo,
    StatusMessage, StoredObject, StoredPatchState, StoredPolicy,
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
    modifiers(&SecuritySchemes, &AdminReplies, &IntegerBounds),
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

/// Each integer's range, from the format its Rust type gives it
/// (`uint32` for `u32`, …): a format alone does not bound a value for a
/// validator, and a client that sends 2³¹ to a `u32` is within the wire
/// type while one that sends 2³² is not. Runs last, over every schema the
/// other modifiers added.
struct IntegerBounds;

impl IntegerBounds {
    fn range(format: &str) -> Option<(serde_json::Value, serde_json::Value)> {
        use serde_json::Value;
        let signed = |min: i64, max: i64| Some((Value::from(min), Value::from(max)));
        let unsigned = |max: u64| Some((Value::from(0u64), Value::from(max)));
        match format {
            "int8" => signed(i8::MIN.into(), i8::MAX.into()),
            "int16" => signed(i16::MIN.into(), i16::MAX.into()),
            "int32" => signed(i32::MIN.into(), i32::MAX.into()),
            "int64" => signed(i64::MIN, i64::MAX),
            "uint8" => unsigned(u8::MAX.into()),
            "uint16" => unsigned(u16::MAX.into()),
            "uint32" => unsigned(u32::MAX.into()),
            "uint64" => unsigned(u64::MAX),
            _ => None,
        }
    }

    fn bound(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(schema) => {
                let is_integer = match schema.get("type") {
                    Some(serde_json::Value::String(t)) => t == "integer",
                    Some(serde_json::Value::Array(types)) => {
                        types.iter().any(|t| t.as_str() == Some("integer"))
                    }
                    _ => false,
                };
                // utoipa writes the unsigned formats `u-int8` … `u-int64`;
                // their usual names are `uint8` … `uint64`.
                if let Some(serde_json::Value::String(format)) = schema.get_mut("format") {
                    if let Some(bits) = format.strip_prefix("u-int") {
                        *format = format!("uint{bits}");
                    }
                }
                let range = schema
                    .get("format")
                    .and_then(|f| f.as_str())
                    .and_then(Self::range);
                if let (true, Some((min, max))) = (is_integer, range) {
                    // A bound the type's own annotation set is kept: it is
                    // narrower than the type's.
                    schema.entry("minimum").or_insert(min);
                    schema.entry("maximum").or_insert(max);
                }
                schema.values_mut().for_each(Self::bound);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(Self::bound),
            _ => {}
        }
    }
}

impl Modify for IntegerBounds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Ok(mut value) = serde_json::to_value(&*openapi) else {
            return;
        };
        Self::bound(&mut value);
        if let Ok(bounded) = serde_json::from_value(value) {
            *openapi = bounded;
        }
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
            .item(only_member("err", of::<crate::remote::wire::WireError>()))
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
            crate::remote::wire::WireError
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
        ("machineCount", usize::schema()),
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

    /// The methods a route's handlers take, as `MethodRouter`'s `Debug`
    /// names its fields; axum answers HEAD for GET by itself.
    const METHODS: [&str; 8] = [
        "get", "post", "put", "delete", "patch", "options", "trace", "connect",
    ];

    /// Every (method, path) the router serves, from its `Debug` text: axum
    /// has no other way to enumerate routes. Its routes are listed by id
    /// with their method routers (`RouteId(3): MethodRouter(MethodRouter {
    /// get: None, post: BoxedHandler, … })`), then the ids' paths
    /// (`RouteId(3): "/v1/inventory"`); the fallback router after them
    /// holds axum's own catch-all paths, not routes.
    fn served_routes() -> BTreeSet<(String, String)> {
        let text = format!("{:?}", super::super::api::routes());
        let routes = text.split("fallback_router").next().unwrap_or_default();
        let (handlers, paths) = routes
            .split_once("node: Node")
            .expect("a router's Debug text lists its routes, then their paths");
        let id_of =
            |segment: &str| -> Option<u64> { segment.split(')').next()?.trim().parse().ok() };
        let mut methods_of = std::collections::BTreeMap::new();
        for segment in handlers.split("RouteId(").skip(1) {
            let id = id_of(segment).expect("route id");
            let methods: Vec<String> = METHODS
                .iter()
                .filter(|m| {
                    segment.contains(&format!("{m}: ")) && !segment.contains(&format!("{m}: None"))
                })
                .map(|m| m.to_string())
                .collect();
            assert!(
                !methods.is_empty(),
                "route {id} takes no method that could be read: {segment}"
            );
            methods_of.insert(id, methods);
        }
        let mut served = BTreeSet::new();
        for segment in paths.split("RouteId(").skip(1) {
            let id = id_of(segment).expect("route id");
            let path = segment.split('"').nth(1).expect("a quoted path");
            for method in methods_of.get(&id).expect("the route of a path") {
                served.insert((method.clone(), path.to_string()));
            }
        }
        served
    }

    #[test]
    fn the_document_lists_every_route_the_router_serves() {
        let doc = json();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let served = served_routes();
        assert!(
            served.len() >= 9 && served.contains(&("post".into(), "/v1/admin/store".into())),
            "the router's routes could not be read: {served:?}"
        );
        assert_eq!(
            documented, served,
            "every (method, route) has a #[utoipa::path] in the document, and nothing else is there"
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

    #[test]
    fn integers_carry_the_range_of_their_rust_type() {
        let doc = json();
        let schemas = &doc["components"]["schemas"];
        let variant = |op: &str| {
            schemas["Call"]["oneOf"]
                .as_array()
                .expect("Call is a oneOf")
                .iter()
                .find(|v| v["properties"]["op"]["enum"][0] == op)
                .unwrap_or_else(|| panic!("no {op}"))
                .clone()
        };
        // u32: 2³¹ is a valid limit, 2³² is not.
        let limit = &variant("statusForMachine")["properties"]["limit"];
        assert_eq!(limit["format"], "uint32", "{limit}");
        assert_eq!(limit["minimum"], 0);
        assert_eq!(limit["maximum"], u64::from(u32::MAX));
        let lease = &schemas["WireLock"]["properties"]["leaseMs"];
        assert_eq!(lease["format"], "uint64", "{lease}");
        assert_eq!(lease["maximum"], u64::MAX);
        let serial = &variant("commit")["properties"]["expectedSerial"];
        assert_eq!(serial["format"], "int64", "{serial}");
        assert_eq!(serial["minimum"], i64::MIN);
        assert_eq!(serial["maximum"], i64::MAX);
        // No integer is left with a format a validator does not bound.
        let text = doc.to_string();
        assert!(!text.contains("\"u-int"), "utoipa's spelling is renamed");
    }

    #[test]
    fn the_healthz_body_and_its_reconcile_member_are_distinct_schemas() {
        let doc = json();
        let body = doc["paths"]["/healthz"]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"]["$ref"]
            .as_str()
            .expect("a $ref")
            .rsplit('/')
            .next()
            .expect("a name")
            .to_string();
        let health = &doc["components"]["schemas"][&body];
        assert!(
            health["properties"]["machines"].is_object(),
            "{body} is the /healthz body: {health}"
        );
        assert!(
            health["properties"]["reconcile"]
                .to_string()
                .contains("#/components/schemas/ReconcileHealth"),
            "{health}"
        );
        assert!(doc["components"]["schemas"]["ReconcileHealth"]["properties"]["since"].is_object());
    }
}
