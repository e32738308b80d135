//! The OpenAPI 3.1 document served at `/api/openapi.json` (and written by `muster openapi`).
//! The schemas of request and response bodies are generated from the types the handlers parse
//! and serialize (utoipa, with each value type's own schema from `muster_core::schema`); the
//! operations are listed next to the routes, and a test checks that they name every route of
//! [`crate::routes::ROUTES`] and no other. Every path parameter is declared from the path
//! itself.

use muster_core::dispatch::{CoverageReport, DispatchRules};

use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::app::{Alive, Ready, ViewsAtStart};
use crate::dispatcher::{ClosuresInForce, Dispatched, RecommendationAnswer};
use crate::error::ErrorBody;
use crate::routes::{
    CommandAnswer, admin, devices, dispatch, incidents, layers, roads, sensors, units, wall,
};
use crate::views::AreaCounts;

/// The schemas of the bodies the operations take and answer, by the names they refer to.
#[derive(OpenApi)]
#[openapi(components(schemas(
    incidents::CreateIncident,
    incidents::AssignUnit,
    incidents::CloseIncident,
    incidents::AddNote,
    incidents::EraseCaller,
    incidents::CallerErased,
    units::RegisterUnit,
    units::ChangeStatus,
    units::ReportPosition,
    units::Decline,
    units::NoFields,
    sensors::RegisterSensor,
    sensors::ReadingIn,
    roads::CloseRoads,
    dispatch::DispatchRequest,
    devices::DeviceTokenRequest,
    crate::routes::feed::FeedTicket,
    crate::routes::audit::AuditTrail,
    crate::trail::TrailLine,
    devices::RevokeDeviceTokens,
    devices::DeviceTokensRevoked,
    devices::DeviceTokenList,
    devices::DeviceTokenRow,
    admin::CreateApiToken,
    admin::CreatedApiToken,
    admin::ApiTokenRow,
    admin::ApiTokenStatus,
    admin::ApiTokenList,
    admin::RevokeApiToken,
    admin::ApiTokenRevoked,
    crate::auth::Role,
    ErrorBody,
    CommandAnswer,
    incidents::IncidentReported,
    incidents::IncidentChanged,
    incidents::UnitAssigned,
    incidents::IncidentBoard,
    incidents::IncidentDetail,
    units::UnitChanged,
    units::UnitBoard,
    crate::views::UnitRow,
    sensors::SensorRegistered,
    sensors::ReadingTaken,
    Dispatched,
    RecommendationAnswer,
    CoverageReport,
    DispatchRules,
    ClosuresInForce,
    roads::RoadsClosed,
    roads::RoadsReopened,
    roads::ReopenRoads,
    devices::DeviceToken,
    AreaCounts,
    layers::PointFeatures,
    wall::CityMap,
    wall::AddressFound,
    wall::Timeline,
    wall::History,
    wall::ResponseTimesToday,
    Alive,
    Ready,
    ViewsAtStart,
)))]
struct Schemas;

/// The schemas generated from the types, as JSON.
fn generated_schemas() -> serde_json::Map<String, Value> {
    let doc = serde_json::to_value(Schemas::openapi()).expect("the generated document serializes");
    doc["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// A path parameter, by its name in the path: every one is an id.
fn path_parameter(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}})
}

/// Every operation that may answer 401 may also answer 429: a client that presented too many
/// unknown tokens is locked out for a while (`Retry-After`).
fn declare_lockout(paths: &mut Value) {
    for item in paths
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        for op in item
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut)
                && responses.contains_key("401")
            {
                responses.insert("429".to_owned(), json!({"$ref": ERROR}));
            }
        }
    }
}

/// Every operation may answer 503 with `Retry-After` when the server handles as many
/// requests as it takes at once (`max_concurrent_requests`), or for the long reads, when
/// every slot for them stays taken.
fn declare_overload(paths: &mut Value) {
    for (_, item) in paths
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.iter_mut())
        .filter(|(path, _)| !matches!(path.as_str(), "/healthz" | "/readyz"))
    {
        for op in item
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                responses
                    .entry("503".to_owned())
                    .or_insert_with(|| json!({"$ref": ERROR}));
            }
        }
    }
}

/// Declares each `{name}` of each path on every operation of it.
fn declare_path_parameters(paths: &mut Value) {
    let Some(paths) = paths.as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let names: Vec<&str> = path
            .split('/')
            .filter_map(|p| p.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
            .collect();
        if names.is_empty() {
            continue;
        }
        for op in item
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            let mut params: Vec<Value> = names.iter().map(|n| path_parameter(n)).collect();
            if let Some(Value::Array(others)) = op.get("parameters") {
                params.extend(others.iter().cloned());
            }
            op["parameters"] = Value::Array(params);
        }
    }
}

/// A reference to a schema.
fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A command's answer: the [`CommandAnswer`] and the command's own fields.
fn command(name: &str) -> Value {
    json!({"allOf": [schema("CommandAnswer"), schema(name)]})
}

const ERROR: &str = "#/components/responses/Error";

fn op(summary: &str, roles: &str, body: Option<&str>, ok: &str, answer: Value) -> Value {
    let mut o = json!({
        "summary": summary,
        "description": format!("Roles: {roles}."),
        "responses": {
            ok: {"description": "Success", "content": {"application/json": {"schema": answer}}},
            "400": {"$ref": ERROR},
            "401": {"$ref": ERROR},
            "403": {"$ref": ERROR},
            "404": {"$ref": ERROR},
            "409": {"$ref": ERROR},
            "413": {"$ref": ERROR},
            "415": {"$ref": ERROR},
            "422": {"$ref": ERROR},
        },
    });
    if let Some(schema) = body {
        o["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
        });
        o["parameters"] = json!([{"$ref": "#/components/parameters/IdempotencyKey"}]);
    }
    o
}

/// Answers 503 too: the operation needs something the server may run without (a city to
/// route on, the mobile gateway).
fn or_unavailable(mut o: Value) -> Value {
    o["responses"]["503"] = json!({"$ref": ERROR});
    o
}

/// A GeoJSON layer's schema: [`layers::PointFeatures`] whose features' properties are the
/// board row `row` without its `location` (which is the geometry).
fn layer_schemas(schemas: &mut serde_json::Map<String, Value>, row: &str, layer: &str) {
    let mut properties = schemas[row].clone();
    if let Some(p) = properties["properties"].as_object_mut() {
        p.remove("location");
    }
    if let Some(required) = properties["required"].as_array_mut() {
        required.retain(|r| r != "location");
    }
    let mut feature = schemas["PointFeature"].clone();
    feature["properties"]["properties"] = schema(&format!("{layer}Properties"));
    let mut collection = schemas["PointFeatures"].clone();
    collection["properties"]["features"]["items"] = schema(&format!("{layer}Feature"));
    schemas.insert(format!("{layer}Properties"), properties);
    schemas.insert(format!("{layer}Feature"), feature);
    schemas.insert(format!("{layer}Features"), collection);
}

/// The document.
pub fn document() -> Value {
    let lon = json!({"type": "number", "minimum": -180, "maximum": 180});
    let lat = json!({"type": "number", "minimum": -90, "maximum": 90});
    let min_position = json!({"name": "min_position", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": u64::MAX},
        "description": "wait (up to 5 s) until the views have applied this log position"});
    let include_closed = json!({"name": "include_closed", "in": "query", "schema": {"type": "boolean"},
        "description": "closed incidents too"});
    let bbox = json!({"name": "bbox", "in": "query", "style": "form", "explode": false,
        "schema": {"type": "array", "prefixItems": [lon.clone(), lat.clone(), lon, lat], "minItems": 4, "maxItems": 4},
        "description": "west,south,east,north in degrees (west > east crosses the antimeridian; south must not be north of north)"});
    // The query parameters each view reads.
    let with = |mut o: Value, parameters: &[&Value]| {
        o["parameters"] = json!(parameters);
        o
    };
    let read = [&min_position];
    let board = [&min_position, &include_closed];
    let layer = [&min_position, &include_closed, &bbox];
    let geojson = |mut o: Value, layer: &str| {
        o["responses"]["200"]["content"] =
            json!({"application/geo+json": {"schema": schema(&format!("{layer}Features"))}});
        o
    };
    let mut device_token = or_unavailable(op(
        "Issue the token a crew's device presents to the mobile gateway (audited in device-<unit id>; 503 when no gateway runs)",
        "operator, admin",
        None,
        "201",
        command("DeviceToken"),
    ));
    device_token["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": schema("DeviceTokenRequest")}}});
    let mut audit_trail = op(
        "The audit trail of one incident, one user, both (what the user did about the incident), or with neither the whole log: who acted or read caller details, with which role and credential, from which address and node; never the events' data. A long read",
        "admin",
        None,
        "200",
        schema("AuditTrail"),
    );
    audit_trail["parameters"] = json!([
        {"name": "incident", "in": "query", "schema": {"type": "string", "format": "uuid"}, "description": "only events about this incident"},
        {"name": "user", "in": "query", "schema": {"type": "string", "minLength": 1, "maxLength": 200}, "description": "only events this user caused"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}
    ]);
    let mut revoke_tokens = op(
        "Revoke one of the unit's device tokens (token_id), or all that are still valid: the gateway closes their sessions (4003) and refuses them (audited in device-<unit id>)",
        "operator, admin",
        None,
        "200",
        command("DeviceTokensRevoked"),
    );
    revoke_tokens["parameters"] = json!([{"$ref": "#/components/parameters/IdempotencyKey"}]);
    revoke_tokens["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": schema("RevokeDeviceTokens")}}});
    // Every request creates a new token: no Idempotency-Key.
    let mut create_api_token = op(
        "Create a machine's API token with a name, role, agency and expiry; the token is in this answer only (the log keeps its SHA-256; audited in api-tokens)",
        "admin",
        None,
        "201",
        command("CreatedApiToken"),
    );
    create_api_token["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema("CreateApiToken")}}});
    let mut revoke_api_token = op(
        "Revoke a machine's API token: refused from now on, on every node within a second (audited in api-tokens)",
        "admin",
        None,
        "200",
        command("ApiTokenRevoked"),
    );
    revoke_api_token["parameters"] = json!([{"$ref": "#/components/parameters/IdempotencyKey"}]);
    revoke_api_token["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": schema("RevokeApiToken")}}});
    let mut wall_geocode = op(
        "Street and house number to positions in the configured city (the console's address lookup)",
        "any",
        None,
        "200",
        schema("AddressFound"),
    );
    wall_geocode["parameters"] = json!([{"name": "q", "in": "query", "required": true, "description": "a street, and a house number if known",
                 "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"}}]);
    let mut wall_at = op(
        "The city at a past moment, in the feed's snapshot shape (the log folded up to it; 422 past 5,000,000 events). A long read: 10 a second per user (bursts of 30; over it 429 with Retry-After), a few at once per server",
        "any",
        None,
        "200",
        schema("History"),
    );
    wall_at["parameters"] = json!([
        {"name": "time", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "position", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": u64::MAX}}
    ]);
    let mut dispatch = or_unavailable(op(
        "Assign the recommended units, or the units named; per-unit results (201 when at least one was assigned, 409 when none)",
        "operator, admin",
        Some("DispatchRequest"),
        "201",
        command("Dispatched"),
    ));
    dispatch["responses"]["409"] = json!({"description": "No unit assigned: the per-unit results say why, or no unit can be recommended (an error)",
        "content": {"application/json": {"schema": {"anyOf": [command("Dispatched"), schema("Error")]}}}});
    let mut coverage = or_unavailable(op(
        "Areas without an available unit of the kinds asked within target_s seconds, with move-up suggestions",
        "any",
        None,
        "200",
        schema("CoverageReport"),
    ));
    coverage["parameters"] = json!([
        {"name": "kinds", "in": "query", "style": "form", "explode": false,
         "schema": {"type": "array", "items": schema("UnitKind"), "minItems": 1},
         "description": "unit kinds, comma-separated (default engine)"},
        {"name": "target_s", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 86400}}
    ]);
    let plain = |summary: &str, description: &str, answer: Value| json!({"summary": summary, "security": [], "responses": {"200": {"description": description, "content": {"application/json": {"schema": answer}}}}});
    let mut readyz = plain(
        "Ready: views caught up with the log as it was at start, not shutting down",
        "ready",
        schema("Ready"),
    );
    readyz["responses"]["503"] = json!({"$ref": ERROR});
    let task_step = |summary: &str, body: &str| {
        let mut o = op(
            summary,
            "operator, responder, admin",
            Some(body),
            "200",
            command("UnitChanged"),
        );
        o["requestBody"]["required"] = json!(false);
        o
    };
    let mut reopen = or_unavailable(op(
        "Reopen a closure's roads",
        "operator, admin",
        None,
        "200",
        command("RoadsReopened"),
    ));
    reopen["parameters"] = json!([{"$ref": "#/components/parameters/IdempotencyKey"}]);
    reopen["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": schema("ReopenRoads")}}});
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "Muster operator API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Commands need a bearer token and an Idempotency-Key header. Errors are {\"error\": {\"code\", \"message\", \"details\"}}."},
        "security": [{"bearer": []}],
        "paths": {
            "/api/incidents": {
                "post": op("Enter a call: report an incident; answers likely duplicates", "operator, admin", Some("CreateIncident"), "201", command("IncidentReported")),
                "get": with(op("The incident board (open incidents by priority, then age)", "any", None, "200", schema("IncidentBoard")), &board),
            },
            "/api/incidents/{id}": {"get": op("One incident from its stream, with time points; caller details for operator and admin", "any", None, "200", schema("IncidentDetail"))},
            "/api/incidents/{id}/tasks": {"post": op("Assign a unit; 409 unit_busy names the incident holding it", "operator, admin", Some("AssignUnit"), "201", command("UnitAssigned"))},
            "/api/incidents/{id}/close": {"post": op("Close the incident; its units are released", "operator, admin", Some("CloseIncident"), "200", command("IncidentChanged"))},
            "/api/incidents/{id}/notes": {"post": op("Add a note", "operator, responder, admin", Some("AddNote"), "200", command("IncidentChanged"))},
            "/api/incidents/{id}/caller/erase": {"post": op("Erase the caller's details on request (GDPR art. 17): recorded as CallerDetailsErased, then the incident's data key is destroyed (crypto-shredding); never disclosed again", "admin", Some("EraseCaller"), "200", command("CallerErased"))},
            "/api/units": {
                "post": op("Register a unit", "operator, admin", Some("RegisterUnit"), "201", command("UnitChanged")),
                "get": with(op("The unit board", "any", None, "200", schema("UnitBoard")), &read),
            },
            "/api/units/{id}": {"get": with(op("One unit from the board", "any", None, "200", schema("UnitRow")), &read)},
            "/api/units/{id}/status": {"post": op("Change a unit's status", "operator, responder, admin", Some("ChangeStatus"), "200", command("UnitChanged"))},
            "/api/units/{id}/position": {"post": op("Report a position fix", "operator, responder, admin", Some("ReportPosition"), "200", command("UnitChanged"))},
            "/api/units/{id}/tasks/{task}/acknowledge": {"post": task_step("Acknowledge a task: the crew has it", "NoFields")},
            "/api/units/{id}/tasks/{task}/decline": {"post": task_step("Decline a task, with an optional reason: the unit is free again and the incident needs another", "Decline")},
            "/api/units/{id}/tasks/{task}/complete": {"post": task_step("Complete a task: the unit is done with the incident", "NoFields")},
            "/api/units/{id}/device-token": {"post": device_token},
            "/api/units/{id}/device-token/revoke": {"post": revoke_tokens},
            "/api/admin/api-tokens": {
                "post": create_api_token,
                "get": op("Every machine's API token, newest first, without its secret: id, name, role, agency, fingerprint, validity, revocation", "admin", None, "200", schema("ApiTokenList")),
            },
            "/api/admin/api-tokens/{id}/revoke": {"post": revoke_api_token},
            "/api/units/{id}/device-tokens": {"get": op("The unit's device tokens, newest first, without their secret: id, fingerprint, who issued it, validity, revocation", "operator, admin", None, "200", schema("DeviceTokenList"))},
            "/api/roads/closures": {
                "post": or_unavailable(op("Close the roads within radius_m (5 to 2,000) of a point; the dispatcher routes around them (stream road-closure-<id>)", "operator, admin", Some("CloseRoads"), "201", command("RoadsClosed"))),
                "get": or_unavailable(op("The road closures in force", "any", None, "200", schema("ClosuresInForce"))),
            },
            "/api/roads/closures/{id}/reopen": {"post": reopen},
            "/api/sensors": {"post": op("Register a sensor with thresholds", "operator, admin", Some("RegisterSensor"), "201", command("SensorRegistered"))},
            "/api/sensors/{id}/readings": {"post": op("Ingest a reading: a threshold crossing raises one alarm and one incident; the clearing is recorded", "operator, admin", Some("ReadingIn"), "200", command("ReadingTaken"))},
            "/api/areas": {"get": with(op("Per-area counts: open incidents by priority, units by status", "any", None, "200", schema("AreaCounts")), &read)},
            "/api/geo/incidents": {"get": geojson(with(op("Incidents as an RFC 7946 FeatureCollection", "any", None, "200", json!({})), &layer), "Incident")},
            "/api/geo/units": {"get": geojson(with(op("Units with a known location as an RFC 7946 FeatureCollection", "any", None, "200", json!({})), &[&min_position, &bbox]), "Unit")},
            "/api/incidents/{id}/recommendation": {"get": or_unavailable(with(op("Units to send, by road travel time, per kind the run card still needs, with reasons; shortfalls and the preemptions a rule allows (min_position waits for the dispatcher)", "any", None, "200", schema("RecommendationAnswer")), &read))},
            "/api/incidents/{id}/dispatch": {"post": dispatch},
            "/api/coverage": {"get": coverage},
            "/api/dispatch/rules": {"get": or_unavailable(op("The dispatch rules in force: automatic dispatch, preemption, acknowledgement timeout", "any", None, "200", schema("DispatchRules")))},
            "/api/feed": {"get": {"summary": "Wall-display websocket: snapshot, then deltas with log positions; ?after=P resumes", "description": "A one-time ?ticket= from POST /api/feed/ticket (browsers), or a bearer token in Authorization. A token in the address is refused. A browser's Origin must be the server's own or in allowed_origins (else 403).", "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": u64::MAX}}, {"name": "ticket", "in": "query", "schema": {"type": "string", "maxLength": 1024}, "description": "a one-time ticket, valid 30 s"}], "responses": {"101": {"description": "Switching protocols"}, "400": {"$ref": ERROR}, "401": {"$ref": ERROR}, "403": {"$ref": ERROR}}}},
            "/api/audit": {"get": audit_trail},
            "/api/feed/ticket": {"post": op("A one-time ticket for the wall feed (GET /api/feed?ticket=…), valid 30 s: browsers cannot send a header when they open a websocket", "any", None, "201", schema("FeedTicket"))},
            "/api/wall/city": {"get": op("The configured city for the wall display's base map: name, bounds, districts, stations, hospitals, map lines", "any", None, "200", schema("CityMap"))},
            "/api/wall/geocode": {"get": wall_geocode},
            "/api/wall/timeline": {"get": op("The first and last events' times and positions, for the replay bar", "any", None, "200", schema("Timeline"))},
            "/api/wall/at": {"get": wall_at},
            "/api/wall/response-times": {"get": op("Today's NFPA time points folded: call to first on scene and to first dispatch, nearest-rank percentiles. A long read: 10 a second per user (bursts of 30; over it 429 with Retry-After), a few at once per server", "any", None, "200", schema("ResponseTimesToday"))},
            "/api/openapi.json": {"get": plain("This document", "OpenAPI 3.1", json!({"type": "object"}))},
            "/healthz": {"get": plain("Alive", "alive", schema("Alive"))},
            "/readyz": {"get": readyz},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "parameters": {"IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": true, "schema": {"type": "string", "minLength": 8, "maxLength": 128, "pattern": "^[!-~]+$"}, "description": "unique per command (a UUID is fine): a repeat with the same key and request is answered as the first time"}},
            "responses": {"Error": {"description": "Error", "content": {"application/json": {"schema": schema("Error")}}}},
            "schemas": {}
        }
    });
    declare_path_parameters(&mut doc["paths"]);
    declare_lockout(&mut doc["paths"]);
    declare_overload(&mut doc["paths"]);
    name_operations(&mut doc["paths"]);
    link_answers(&mut doc["paths"]);
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.extend(generated_schemas());
        layer_schemas(schemas, "IncidentRow", "Incident");
        layer_schemas(schemas, "UnitRow", "Unit");
        // The handler takes a location or else an address: one of them is needed.
        let given = |field: &str| json!({"required": [field], "properties": {field: {"not": {"type": "null"}}}});
        schemas["CreateIncident"]["anyOf"] = json!([given("location"), given("address")]);
    }
    doc
}

/// The id of the operation `method path`: `post_incidents_id_tasks` for
/// `POST /api/incidents/{id}/tasks`.
pub fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != "api") {
        id.push('_');
        id.extend(
            part.chars()
                .filter(|c| !matches!(c, '{' | '}'))
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    id
}

fn name_operations(paths: &mut Value) {
    let Some(paths) = paths.as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for (method, op) in item.as_object_mut().into_iter().flatten() {
            op["operationId"] = json!(operation_id(method, path));
        }
    }
}

/// A link: its name, the operation it leads to, and each path parameter of that operation
/// with the field of the answer that fills it.
type Link = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// OpenAPI links: which later requests take an id from an answer (an incident entered is
/// then read, assigned to, dispatched, noted and closed; a unit registered gets a status, a
/// position and a device token; an assignment's task takes its steps), so a client, or a
/// tester, follows ids the server gave instead of guessing.
fn link_answers(paths: &mut Value) {
    let links: &[(&str, &str, &str, &[Link])] = &[
        (
            "/api/incidents",
            "post",
            "201",
            &[
                ("Read", "/api/incidents/{id}", &[("id", "incident_id")]),
                (
                    "Assign",
                    "/api/incidents/{id}/tasks",
                    &[("id", "incident_id")],
                ),
                (
                    "Close",
                    "/api/incidents/{id}/close",
                    &[("id", "incident_id")],
                ),
                (
                    "Note",
                    "/api/incidents/{id}/notes",
                    &[("id", "incident_id")],
                ),
                (
                    "Recommend",
                    "/api/incidents/{id}/recommendation",
                    &[("id", "incident_id")],
                ),
                (
                    "Dispatch",
                    "/api/incidents/{id}/dispatch",
                    &[("id", "incident_id")],
                ),
            ],
        ),
        (
            "/api/units",
            "post",
            "201",
            &[
                ("Read", "/api/units/{id}", &[("id", "unit_id")]),
                ("Status", "/api/units/{id}/status", &[("id", "unit_id")]),
                ("Position", "/api/units/{id}/position", &[("id", "unit_id")]),
                (
                    "DeviceToken",
                    "/api/units/{id}/device-token",
                    &[("id", "unit_id")],
                ),
            ],
        ),
        (
            "/api/incidents/{id}/tasks",
            "post",
            "201",
            &[
                (
                    "Acknowledge",
                    "/api/units/{id}/tasks/{task}/acknowledge",
                    &[("id", "unit_id"), ("task", "task_id")],
                ),
                (
                    "Decline",
                    "/api/units/{id}/tasks/{task}/decline",
                    &[("id", "unit_id"), ("task", "task_id")],
                ),
                (
                    "Complete",
                    "/api/units/{id}/tasks/{task}/complete",
                    &[("id", "unit_id"), ("task", "task_id")],
                ),
            ],
        ),
        (
            "/api/sensors",
            "post",
            "201",
            &[(
                "Reading",
                "/api/sensors/{id}/readings",
                &[("id", "sensor_id")],
            )],
        ),
        (
            "/api/admin/api-tokens",
            "post",
            "201",
            &[(
                "Revoke",
                "/api/admin/api-tokens/{id}/revoke",
                &[("id", "token_id")],
            )],
        ),
        (
            "/api/roads/closures",
            "post",
            "201",
            &[(
                "Reopen",
                "/api/roads/closures/{id}/reopen",
                &[("id", "closure_id")],
            )],
        ),
    ];
    for (path, method, status, targets) in links {
        let mut out = serde_json::Map::new();
        for (name, target, parameters) in *targets {
            let method = if target.ends_with("{id}") || target.ends_with("recommendation") {
                "get"
            } else {
                "post"
            };
            let parameters: serde_json::Map<String, Value> = parameters
                .iter()
                .map(|(p, field)| (p.to_string(), json!(format!("$response.body#/{field}"))))
                .collect();
            out.insert(
                name.to_string(),
                json!({"operationId": operation_id(method, target), "parameters": parameters}),
            );
        }
        paths[path][method]["responses"][status]["links"] = Value::Object(out);
    }
}

/// The document as `muster openapi` writes it: indented, keys sorted, a final newline.
pub fn document_text() -> String {
    let mut text =
        serde_json::to_string_pretty(&document()).expect("the document serializes to JSON");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::routes::ROUTES;

    /// The wall display's TypeScript types are generated from `backend/web/openapi.json`
    /// when it is built; this holds that copy to the document the server serves, so a
    /// changed answer type fails here until the copy is written again, and then fails the
    /// wall display's build wherever it reads a field that changed.
    #[test]
    fn the_wall_displays_copy_of_the_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/openapi.json");
        let copy = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            copy == document_text(),
            "backend/web/openapi.json is not the served document; write it again with \
             `cargo run --bin muster -- openapi --output backend/web/openapi.json`"
        );
    }

    #[test]
    fn answers_come_from_the_types() {
        let doc = document();
        let ok = |path: &str, method: &str, status: &str| {
            doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
                .clone()
        };
        assert_eq!(
            ok("/api/incidents", "get", "200"),
            json!({"$ref": "#/components/schemas/IncidentBoard"})
        );
        assert_eq!(
            ok("/api/incidents", "post", "201")["allOf"][1],
            json!({"$ref": "#/components/schemas/IncidentReported"})
        );
        let row = &doc["components"]["schemas"]["IncidentRow"];
        for field in [
            "id", "status", "priority", "location", "area", "units", "position",
        ] {
            assert!(
                row["properties"][field].is_object(),
                "IncidentRow.{field}: {row}"
            );
        }
        let answer = &doc["components"]["schemas"]["CommandAnswer"];
        assert_eq!(
            answer["required"],
            json!(["position", "events"]),
            "{answer}"
        );
        // Every 2xx and error answer but the websocket's upgrade says what its body is.
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status == "101" || response.get("$ref").is_some() {
                        continue;
                    }
                    let content = response["content"].as_object();
                    let schema = content
                        .and_then(|c| c.values().next())
                        .map(|m| &m["schema"]);
                    assert!(
                        schema.is_some_and(
                            |s| s != &json!({"type": "object"}) || path == "/api/openapi.json"
                        ),
                        "{method} {path} {status} has no schema of its own"
                    );
                }
            }
        }
        // A layer's features carry the board row without its location, the geometry.
        let props = &doc["components"]["schemas"]["IncidentProperties"];
        assert!(props["properties"]["location"].is_null(), "{props}");
        assert!(props["properties"]["priority"].is_object(), "{props}");
        assert_eq!(
            doc["components"]["schemas"]["IncidentFeatures"]["properties"]["features"]["items"],
            json!({"$ref": "#/components/schemas/IncidentFeature"})
        );
    }

    #[test]
    fn the_document_names_every_route_and_no_other() {
        let doc = document();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, routed);
    }

    #[test]
    fn request_bodies_come_from_the_types() {
        let doc = document();
        let create = &doc["components"]["schemas"]["CreateIncident"];
        assert_eq!(create["additionalProperties"], json!(false), "{create}");
        let required: Vec<&str> = create["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, ["incident_type", "priority"]);
        let priority = &doc["components"]["schemas"]["Priority"];
        assert_eq!(priority["enum"], json!(["P1", "P2", "P3", "P4", "P5"]));
        let radius = &doc["components"]["schemas"]["CloseRoads"]["properties"]["radius_m"];
        assert_eq!(
            (radius["minimum"].as_f64(), radius["maximum"].as_f64()),
            (Some(5.0), Some(2000.0))
        );
    }

    #[test]
    fn every_path_parameter_is_declared() {
        let doc = document();
        let step = &doc["paths"]["/api/units/{id}/tasks/{task}/decline"]["post"]["parameters"];
        let names: Vec<&str> = step
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["id", "task"]);
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/").skip(1) {
            let target = &piece[..piece.find('"').unwrap()];
            let mut node = &doc;
            for part in target.split('/') {
                node = &node[part];
            }
            assert!(!node.is_null(), "dangling $ref {target}");
        }
    }
}
