//! `GET WhoAmI`: the caller's systemuser, business unit and organization.

use serde_json::json;

use crate::dataverse::{Ctx, DvResponse};
use crate::errors::DvError;
use crate::users;

/// Answers the WhoAmI function; any other method (or a sub-path) is a wrong URI for a function.
pub fn handle(ctx: &Ctx<'_>, method: &str, path: &str, rest: &str) -> Result<DvResponse, DvError> {
    if method != "GET" || !rest.is_empty() {
        // Reference §3.8: a function called with the wrong method → 404, empty code.
        return Err(DvError::new(
            404,
            "",
            format!(
                "No HTTP resource was found that matches the request URI '{}/api/data/v9.2/{path}'.",
                ctx.base
            ),
        ));
    }
    Ok(DvResponse::json(
        200,
        &json!({
            "@odata.context": format!("{}/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", ctx.base),
            "BusinessUnitId": users::BUSINESS_UNIT_ID,
            "UserId": ctx.user,
            "OrganizationId": users::ORGANIZATION_ID,
        }),
    ))
}
