//! The OpenAPI 3.1 document served at `/api/openapi.json`. The request bodies' schemas are
//! generated from the types the handlers parse (utoipa, with each value type's own schema from
//! `muster_core::schema`); the operations are listed next to the routes, and a test checks that
//! they name every route of [`crate::routes::ROUTES`] and no other. Every path parameter is
//! declared from the path itself.

use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::routes::{devices, dispatch, incidents, roads, sensors, units};

/// The request bodies, by the names the operations refer to.
#[derive(OpenApi)]
#[openapi(components(schemas(
    incidents::CreateIncident,
    incidents::AssignUnit,
    incidents::CloseIncident,
    incidents::AddNote,
    units::RegisterUnit,
    units::ChangeStatus,
    units::ReportPosition,
    units::Decline,
    sensors::RegisterSensor,
    sensors::ReadingIn,
    roads::CloseRoads,
    dispatch::DispatchRequest,
    devices::DeviceTokenRequest,
)))]
struct Bodies;

/// The schemas generated from the request types, as JSON.
fn body_schemas() -> serde_json::Map<String, Value> {
    let doc = serde_json::to_value(Bodies::openapi()).expect("the generated document serializes");
    doc["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// The schema of a path parameter, by its name in the path.
fn path_parameter(name: &str) -> Value {
    let schema = match name {
        "step" => json!({"type": "string", "enum": ["acknowledge", "decline", "complete"]}),
        _ => json!({"type": "string", "format": "uuid"}),
    };
    json!({"name": name, "in": "path", "required": true, "schema": schema})
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

fn op(summary: &str, roles: &str, body: Option<&str>, ok: &str) -> Value {
    let mut o = json!({
        "summary": summary,
        "description": format!("Roles: {roles}."),
        "responses": {
            ok: {"description": "Success", "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": {"$ref": "#/components/responses/Error"},
            "401": {"$ref": "#/components/responses/Error"},
            "403": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"},
            "409": {"$ref": "#/components/responses/Error"},
            "413": {"$ref": "#/components/responses/Error"},
            "415": {"$ref": "#/components/responses/Error"},
            "422": {"$ref": "#/components/responses/Error"},
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

/// The document.
pub fn document() -> Value {
    let view_params = json!([
        {"name": "min_position", "in": "query", "schema": {"type": "integer", "minimum": 0}, "description": "wait until the views have applied this log position"},
        {"name": "include_closed", "in": "query", "schema": {"type": "boolean"}},
        {"name": "bbox", "in": "query", "schema": {"type": "string"}, "description": "west,south,east,north in degrees (GeoJSON layers)"}
    ]);
    let with_params = |mut o: Value| {
        o["parameters"] = view_params.clone();
        o
    };
    let geojson = |mut o: Value| {
        o["responses"]["200"]["content"] = json!({"application/geo+json": {"schema": {"type": "object", "required": ["type", "features"],
                "properties": {"type": {"const": "FeatureCollection"}, "features": {"type": "array"}}}}});
        o
    };
    let mut device_token = op(
        "Issue the token a crew's device presents to the mobile gateway (audited in device-<unit id>; 503 when no gateway runs)",
        "operator, admin",
        None,
        "201",
    );
    device_token["responses"]["503"] = json!({"$ref": "#/components/responses/Error"});
    device_token["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DeviceTokenRequest"}}}});
    let mut wall_geocode = op(
        "Street and house number to positions in the configured city (the console's address lookup)",
        "any",
        None,
        "200",
    );
    wall_geocode["parameters"] =
        json!([{"name": "q", "in": "query", "required": true, "schema": {"type": "string"}}]);
    let mut wall_at = op(
        "The city at a past moment, in the feed's snapshot shape (the log folded up to it; 422 past 5,000,000 events)",
        "any",
        None,
        "200",
    );
    wall_at["parameters"] = json!([
        {"name": "time", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "position", "in": "query", "schema": {"type": "integer", "minimum": 0}}
    ]);
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "Muster operator API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Commands need a bearer token and an Idempotency-Key header. Errors are {\"error\": {\"code\", \"message\", \"details\"}}."},
        "security": [{"bearer": []}],
        "paths": {
            "/api/incidents": {
                "post": op("Enter a call: report an incident; answers likely duplicates", "operator, admin", Some("CreateIncident"), "201"),
                "get": with_params(op("The incident board (open incidents by priority, then age)", "any", None, "200")),
            },
            "/api/incidents/{id}": {"get": op("One incident from its stream, with time points; caller details for operator and admin", "any", None, "200")},
            "/api/incidents/{id}/tasks": {"post": op("Assign a unit; 409 unit_busy names the incident holding it", "operator, admin", Some("AssignUnit"), "201")},
            "/api/incidents/{id}/close": {"post": op("Close the incident; its units are released", "operator, admin", Some("CloseIncident"), "200")},
            "/api/incidents/{id}/notes": {"post": op("Add a note", "operator, responder, admin", Some("AddNote"), "200")},
            "/api/units": {
                "post": op("Register a unit", "operator, admin", Some("RegisterUnit"), "201"),
                "get": with_params(op("The unit board", "any", None, "200")),
            },
            "/api/units/{id}": {"get": with_params(op("One unit from the board", "any", None, "200"))},
            "/api/units/{id}/status": {"post": op("Change a unit's status", "operator, responder, admin", Some("ChangeStatus"), "200")},
            "/api/units/{id}/position": {"post": op("Report a position fix", "operator, responder, admin", Some("ReportPosition"), "200")},
            "/api/units/{id}/tasks/{task}/{step}": {"post": op("Acknowledge, decline or complete a task (step: acknowledge | decline | complete)", "operator, responder, admin", Some("Decline"), "200")},
            "/api/units/{id}/device-token": {"post": device_token},
            "/api/roads/closures": {
                "post": op("Close the roads within radius_m (5 to 2,000) of a point; the dispatcher routes around them (stream road-closure-<id>)", "operator, admin", Some("CloseRoads"), "201"),
                "get": op("The road closures in force", "any", None, "200"),
            },
            "/api/roads/closures/{id}/reopen": {"post": op("Reopen a closure's roads", "operator, admin", None, "200")},
            "/api/sensors": {"post": op("Register a sensor with thresholds", "operator, admin", Some("RegisterSensor"), "201")},
            "/api/sensors/{id}/readings": {"post": op("Ingest a reading: a threshold crossing raises one alarm and one incident; the clearing is recorded", "operator, admin", Some("ReadingIn"), "200")},
            "/api/areas": {"get": with_params(op("Per-area counts: open incidents by priority, units by status", "any", None, "200"))},
            "/api/geo/incidents": {"get": geojson(with_params(op("Incidents as an RFC 7946 FeatureCollection", "any", None, "200")))},
            "/api/geo/units": {"get": geojson(with_params(op("Units with a known location as an RFC 7946 FeatureCollection", "any", None, "200")))},
            "/api/incidents/{id}/recommendation": {"get": with_params(op("Units to send, by road travel time, per kind the run card still needs, with reasons; shortfalls and the preemptions a rule allows (min_position waits for the dispatcher)", "any", None, "200"))},
            "/api/incidents/{id}/dispatch": {"post": op("Assign the recommended units, or the units named; per-unit results (201 when at least one was assigned, 409 when none)", "operator, admin", Some("DispatchRequest"), "201")},
            "/api/coverage": {"get": {"summary": "Areas without an available unit of the kinds asked within target_s seconds, with move-up suggestions", "description": "Roles: any.", "parameters": [{"name": "kinds", "in": "query", "schema": {"type": "string"}, "description": "unit kinds, comma-separated (default engine)"}, {"name": "target_s", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 86400}}], "responses": {"200": {"description": "Coverage report"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
            "/api/dispatch/rules": {"get": op("The dispatch rules in force: automatic dispatch, preemption, acknowledgement timeout", "any", None, "200")},
            "/api/feed": {"get": {"summary": "Wall-display websocket: snapshot, then deltas with log positions; ?after=P resumes", "description": "Token in Authorization or ?access_token=.", "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}}], "responses": {"101": {"description": "Switching protocols"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}}}},
            "/api/wall/city": {"get": op("The configured city for the wall display's base map: name, bounds, districts, stations, hospitals, map lines", "any", None, "200")},
            "/api/wall/geocode": {"get": wall_geocode},
            "/api/wall/timeline": {"get": op("The first and last events' times and positions, for the replay bar", "any", None, "200")},
            "/api/wall/at": {"get": wall_at},
            "/api/wall/response-times": {"get": op("Today's NFPA time points folded: call to first on scene and to first dispatch, nearest-rank percentiles", "any", None, "200")},
            "/api/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/healthz": {"get": {"summary": "Alive", "security": [], "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "Ready: views caught up with the log as it was at start, not shutting down", "security": [], "responses": {"200": {"description": "ready"}, "503": {"$ref": "#/components/responses/Error"}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "parameters": {"IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": true, "schema": {"type": "string", "minLength": 8, "maxLength": 128}}},
            "responses": {"Error": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}}},
            }
        }
    });
    declare_path_parameters(&mut doc["paths"]);
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.extend(body_schemas());
    }
    doc
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::routes::ROUTES;

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
        let step = &doc["paths"]["/api/units/{id}/tasks/{task}/{step}"]["post"]["parameters"];
        let names: Vec<&str> = step
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["id", "task", "step"]);
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
