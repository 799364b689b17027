//! Schema URNs and the discovery documents (`/ServiceProviderConfig`,
//! `/ResourceTypes`, `/Schemas`), which tell the truth about what this
//! service provider supports; plus attribute facts the protocol code needs.

use serde_json::{Value, json};

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const BULK_REQUEST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
pub const SPC_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// Most resources a list returns per page.
pub const MAX_RESULTS: u64 = 1000;
/// Bulk limits, advertised and enforced.
pub const BULK_MAX_OPERATIONS: usize = 1000;
pub const BULK_MAX_PAYLOAD: usize = 1_048_576;
/// Largest body accepted outside /Bulk.
pub const MAX_BODY: usize = 1_048_576;

/// Whether string values at `path` (lowercased `name` or `name.sub`, no URN)
/// compare case-sensitively.
pub fn case_exact(path: &str) -> bool {
    matches!(
        path,
        "id" | "externalid"
            | "members.value"
            | "groups.value"
            | "meta.version"
            | "meta.location"
            | "x509certificates.value"
    )
}

pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SPC_URN],
        "documentationUri": "https://github.com/idpsync/idpsync#scim",
        "patch": {"supported": true},
        "bulk": {"supported": true, "maxOperations": BULK_MAX_OPERATIONS, "maxPayloadSize": BULK_MAX_PAYLOAD},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A token from `idpsync token create --scope scim --connection <id>`, sent as Authorization: Bearer",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")}
    })
}

pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": [RESOURCE_TYPE_URN],
            "id": "User", "name": "User", "endpoint": "/Users", "description": "User Account",
            "schema": USER_URN,
            "schemaExtensions": [{"schema": ENTERPRISE_URN, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")}
        }),
        json!({
            "schemas": [RESOURCE_TYPE_URN],
            "id": "Group", "name": "Group", "endpoint": "/Groups", "description": "Group",
            "schema": GROUP_URN,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")}
        }),
    ]
}

/// An attribute definition for `/Schemas`.
#[expect(
    clippy::too_many_arguments,
    reason = "one argument per field of an RFC 7643 §7 attribute"
)]
fn attr(
    name: &str,
    kind: &str,
    multi: bool,
    required: bool,
    case_exact: bool,
    mutability: &str,
    returned: &str,
    uniqueness: &str,
) -> Value {
    json!({
        "name": name, "type": kind, "multiValued": multi, "required": required,
        "caseExact": case_exact, "mutability": mutability, "returned": returned, "uniqueness": uniqueness,
        "description": name
    })
}

fn string(name: &str) -> Value {
    attr(
        name,
        "string",
        false,
        false,
        false,
        "readWrite",
        "default",
        "none",
    )
}

fn complex(name: &str, multi: bool, subs: Vec<Value>) -> Value {
    let mut value = attr(
        name,
        "complex",
        multi,
        false,
        false,
        "readWrite",
        "default",
        "none",
    );
    value["subAttributes"] = Value::Array(subs);
    value
}

fn multi_valued(name: &str, value_type: &str) -> Value {
    complex(
        name,
        true,
        vec![
            attr(
                "value",
                value_type,
                false,
                false,
                false,
                "readWrite",
                "default",
                "none",
            ),
            string("display"),
            string("type"),
            attr(
                "primary",
                "boolean",
                false,
                false,
                false,
                "readWrite",
                "default",
                "none",
            ),
        ],
    )
}

pub fn schemas(base: &str) -> Vec<Value> {
    let mut groups = multi_valued("groups", "string");
    groups["mutability"] = "readOnly".into();
    let user = json!({
        "schemas": [SCHEMA_URN],
        "id": USER_URN, "name": "User", "description": "User Account",
        "attributes": [
            attr("userName", "string", false, true, false, "readWrite", "default", "server"),
            complex("name", false, vec![string("formatted"), string("familyName"), string("givenName"), string("middleName"), string("honorificPrefix"), string("honorificSuffix")]),
            string("displayName"), string("nickName"),
            attr("profileUrl", "reference", false, false, false, "readWrite", "default", "none"),
            string("title"), string("userType"), string("preferredLanguage"), string("locale"), string("timezone"),
            attr("active", "boolean", false, false, false, "readWrite", "default", "none"),
            attr("password", "string", false, false, false, "writeOnly", "never", "none"),
            multi_valued("emails", "string"), multi_valued("phoneNumbers", "string"), multi_valued("ims", "string"),
            multi_valued("photos", "reference"),
            complex("addresses", true, vec![string("formatted"), string("streetAddress"), string("locality"), string("region"), string("postalCode"), string("country"), string("type"), attr("primary", "boolean", false, false, false, "readWrite", "default", "none")]),
            groups,
            multi_valued("entitlements", "string"), multi_valued("roles", "string"), multi_valued("x509Certificates", "binary")
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{USER_URN}")}
    });
    let enterprise = json!({
        "schemas": [SCHEMA_URN],
        "id": ENTERPRISE_URN, "name": "EnterpriseUser", "description": "Enterprise User",
        "attributes": [
            string("employeeNumber"), string("costCenter"), string("organization"), string("division"), string("department"),
            complex("manager", false, vec![string("value"), attr("$ref", "reference", false, false, false, "readWrite", "default", "none"), attr("displayName", "string", false, false, false, "readOnly", "default", "none")])
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{ENTERPRISE_URN}")}
    });
    let group = json!({
        "schemas": [SCHEMA_URN],
        "id": GROUP_URN, "name": "Group", "description": "Group",
        "attributes": [
            attr("displayName", "string", false, true, false, "readWrite", "default", "none"),
            complex("members", true, vec![
                attr("value", "string", false, false, true, "immutable", "default", "none"),
                attr("$ref", "reference", false, false, false, "immutable", "default", "none"),
                attr("display", "string", false, false, false, "readOnly", "default", "none"),
                attr("type", "string", false, false, false, "immutable", "default", "none")
            ])
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{GROUP_URN}")}
    });
    vec![user, enterprise, group]
}
