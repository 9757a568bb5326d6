//! Who may do what: the scope each admin route needs. A route missing
//! here is refused to every key (a test in `http` checks that every
//! documented admin route is listed and no listed one is undocumented).

use crate::vocab::ServiceScope;

/// The scope each admin route needs, by method and route template.
pub const ROUTE_SCOPES: &[(&str, &str, ServiceScope)] = &[
    ("GET", "/admin/v1/users", ServiceScope::UsersRead),
    ("GET", "/admin/v1/users/{id}", ServiceScope::UsersRead),
    ("DELETE", "/admin/v1/users/{id}", ServiceScope::UsersWrite),
    (
        "POST",
        "/admin/v1/users/{id}/revoke",
        ServiceScope::SessionsRevoke,
    ),
    (
        "GET",
        "/admin/v1/users/{id}/export",
        ServiceScope::UsersRead,
    ),
    ("GET", "/admin/v1/data/{collection}", ServiceScope::DataRead),
    (
        "POST",
        "/admin/v1/data/{collection}",
        ServiceScope::DataWrite,
    ),
    (
        "GET",
        "/admin/v1/data/{collection}/{id}",
        ServiceScope::DataRead,
    ),
    (
        "PUT",
        "/admin/v1/data/{collection}/{id}",
        ServiceScope::DataWrite,
    ),
    (
        "DELETE",
        "/admin/v1/data/{collection}/{id}",
        ServiceScope::DataWrite,
    ),
    ("GET", "/admin/v1/audit", ServiceScope::AuditRead),
    ("GET", "/admin/v1/users/{id}/files", ServiceScope::FilesRead),
    (
        "DELETE",
        "/admin/v1/users/{id}/files/{file_id}",
        ServiceScope::FilesWrite,
    ),
    (
        "POST",
        "/admin/v1/users/{id}/messages",
        ServiceScope::MessagesSend,
    ),
    (
        "GET",
        "/admin/v1/users/{id}/subscriptions",
        ServiceScope::UsersRead,
    ),
];

/// The scope `method` on the route `template` needs; None: no key may call it.
pub fn scope_for(method: &str, template: &str) -> Option<ServiceScope> {
    ROUTE_SCOPES
        .iter()
        .find(|(m, t, _)| *m == method && *t == template)
        .map(|(_, _, scope)| *scope)
}
