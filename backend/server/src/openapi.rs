//! The OpenAPI 3.1 document served at `/api/openapi.json`, kept by hand next to the routes;
//! a test checks that it names every route of [`crate::routes::ROUTES`] and no other.

use serde_json::{Value, json};

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
    let latlon = json!({"type": "object", "required": ["lat", "lon"], "properties": {
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180}}});
    let view_params = json!([
        {"name": "min_position", "in": "query", "schema": {"type": "integer"}, "description": "wait until the views have applied this log position"},
        {"name": "include_closed", "in": "query", "schema": {"type": "boolean"}},
        {"name": "bbox", "in": "query", "schema": {"type": "string"}, "description": "west,south,east,north in degrees (GeoJSON layers)"}
    ]);
    let with_params = |mut o: Value| {
        o["parameters"] = view_params.clone();
        o
    };
    let mut device_token = op(
        "Issue the token a crew's device presents to the mobile gateway (audited in device-<unit id>; 503 when no gateway runs)",
        "operator, admin",
        None,
        "201",
    );
    device_token["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": {"type": "object", "properties": {"valid_hours": {"type": "integer", "minimum": 1, "maximum": 18, "default": 12}}}}}});
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
        {"name": "position", "in": "query", "schema": {"type": "integer"}}
    ]);
    json!({
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
            "/api/units/{id}/tasks/{task}/{step}": {"post": op("Acknowledge, decline or complete a task (step: acknowledge | decline | complete)", "operator, responder, admin", Some("TaskStep"), "200")},
            "/api/units/{id}/device-token": {"post": device_token},
            "/api/roads/closures": {
                "post": op("Close the roads within radius_m (5 to 2,000) of a point; the dispatcher routes around them (stream road-closure-<id>)", "operator, admin", Some("CloseRoads"), "201"),
                "get": op("The road closures in force", "any", None, "200"),
            },
            "/api/roads/closures/{id}/reopen": {"post": op("Reopen a closure's roads", "operator, admin", None, "200")},
            "/api/sensors": {"post": op("Register a sensor with thresholds", "operator, admin", Some("RegisterSensor"), "201")},
            "/api/sensors/{id}/readings": {"post": op("Ingest a reading: a threshold crossing raises one alarm and one incident; the clearing is recorded", "operator, admin", Some("Reading"), "200")},
            "/api/areas": {"get": with_params(op("Per-area counts: open incidents by priority, units by status", "any", None, "200"))},
            "/api/geo/incidents": {"get": with_params(op("Incidents as an RFC 7946 FeatureCollection", "any", None, "200"))},
            "/api/geo/units": {"get": with_params(op("Units with a known location as an RFC 7946 FeatureCollection", "any", None, "200"))},
            "/api/incidents/{id}/recommendation": {"get": with_params(op("Units to send, by road travel time, per kind the run card still needs, with reasons; shortfalls and the preemptions a rule allows (min_position waits for the dispatcher)", "any", None, "200"))},
            "/api/incidents/{id}/dispatch": {"post": op("Assign the recommended units, or the units named; per-unit results (201 when at least one was assigned, 409 when none)", "operator, admin", Some("Dispatch"), "201")},
            "/api/coverage": {"get": {"summary": "Areas without an available unit of the kinds asked within target_s seconds, with move-up suggestions", "description": "Roles: any.", "parameters": [{"name": "kinds", "in": "query", "schema": {"type": "string"}, "description": "unit kinds, comma-separated (default engine)"}, {"name": "target_s", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 86400}}], "responses": {"200": {"description": "Coverage report"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
            "/api/dispatch/rules": {"get": op("The dispatch rules in force: automatic dispatch, preemption, acknowledgement timeout", "any", None, "200")},
            "/api/feed": {"get": {"summary": "Wall-display websocket: snapshot, then deltas with log positions; ?after=P resumes", "description": "Token in Authorization or ?access_token=.", "parameters": [{"name": "after", "in": "query", "schema": {"type": "integer"}}], "responses": {"101": {"description": "Switching protocols"}, "401": {"$ref": "#/components/responses/Error"}}}},
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
                "LatLon": latlon,
                "CreateIncident": {"type": "object", "required": ["incident_type", "priority"], "description": "location, or else address (resolved in the server's city)", "properties": {
                    "id": {"type": "string", "format": "uuid"}, "location": {"$ref": "#/components/schemas/LatLon"}, "address": {"type": "string"},
                    "incident_type": {"type": "string"}, "priority": {"enum": ["P1", "P2", "P3", "P4", "P5"]},
                    "caller": {"type": "object", "properties": {"name": {"type": "string"}, "call_back": {"type": "string"}}},
                    "source": {"enum": ["hotline", "citizen"]}, "call_received_at": {"type": "string", "format": "date-time"}}},
                "AssignUnit": {"type": "object", "required": ["unit_id"], "properties": {"unit_id": {"type": "string", "format": "uuid"}}},
                "CloseIncident": {"type": "object", "required": ["disposition"], "properties": {"disposition": {"enum": ["resolved", "false_alarm", "nothing_found", "cancelled", "transferred"]}}},
                "AddNote": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string", "maxLength": 4000}}},
                "RegisterUnit": {"type": "object", "required": ["kind", "call_sign", "agency", "home_station"], "properties": {
                    "id": {"type": "string", "format": "uuid"}, "kind": {"type": "string"}, "call_sign": {"type": "string"},
                    "agency": {"type": "string"}, "home_station": {"type": "string"},
                    "capabilities": {"type": "array", "items": {"type": "string"}}, "location": {"$ref": "#/components/schemas/LatLon"}}},
                "ChangeStatus": {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["available", "dispatched", "en_route", "on_scene", "transporting", "at_hospital", "returning", "out_of_service"]}}},
                "ReportPosition": {"type": "object", "required": ["location"], "properties": {"location": {"$ref": "#/components/schemas/LatLon"},
                    "heading_deg": {"type": "number"}, "speed_m_s": {"type": "number"}, "accuracy_m": {"type": "number"}, "at": {"type": "string", "format": "date-time"}}},
                "TaskStep": {"type": "object", "properties": {"reason": {"type": "string"}}},
                "Dispatch": {"type": "object", "properties": {"units": {"type": "array", "items": {"type": "string", "format": "uuid"}, "description": "absent: the recommended units"}}},
                "RegisterSensor": {"type": "object", "required": ["kind", "location", "thresholds"], "properties": {
                    "id": {"type": "string", "format": "uuid"}, "kind": {"type": "string"}, "location": {"$ref": "#/components/schemas/LatLon"},
                    "thresholds": {"type": "array", "items": {"type": "object", "required": ["metric", "crossing", "raise_at", "clear_at", "incident_type", "priority"]}}}},
                "CloseRoads": {"type": "object", "required": ["location", "radius_m"], "properties": {"location": {"$ref": "#/components/schemas/LatLon"}, "radius_m": {"type": "number", "minimum": 5, "maximum": 2000}, "note": {"type": "string", "maxLength": 500}}},
                "Reading": {"type": "object", "required": ["metric", "value"], "properties": {"metric": {"type": "string"}, "value": {"type": "number"}, "at": {"type": "string", "format": "date-time"}}},
            }
        }
    })
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
