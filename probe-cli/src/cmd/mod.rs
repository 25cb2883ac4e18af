//! One module per subcommand. A command imports only the layers below it (`cli`, `recorder`,
//! `traffic`, `kernel`), never another command.

pub mod report;
pub mod status;
pub mod top;
pub mod verify;
