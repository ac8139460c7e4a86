//! `lookup-customer`: one customer of the SQL source `crm` (granted by the operator), by id.
use warden_sdk::prelude::*;

#[derive(Deserialize, JsonSchema)]
struct Lookup {
    /// The customer's id.
    id: i64,
}

/// A row of the `customers` table.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Customer {
    id: i64,
    name: String,
    email: Option<String>,
    vip: bool,
}

fn lookup(_ctx: &Context, input: Lookup) -> Result<Customer, ToolError> {
    let query = "SELECT id, name, email, vip FROM customers WHERE id = ?";
    let found = Sql::open("crm")?.query_first_as(query, &[input.id.into()])?;
    found.ok_or_else(|| ToolError::invalid_input(format!("no customer with id {}", input.id)))
}

warden_sdk::export_plugin!(|| Tools::new().tool("lookup-customer", "A customer by id.", lookup));
