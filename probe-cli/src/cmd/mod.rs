//! One module per subcommand: its flags (`Args`) and its `run`. A command imports only the
//! layers below it (`cli`, `output`, `signals`, `recorder`, `traffic`, `kernel`), never
//! another command.

pub mod check;
pub mod record;
pub mod recover;
pub mod report;
pub mod scenario;
pub mod serve;
pub mod simulate;
pub mod status;
pub mod top;
pub mod verify;
pub mod whatif;
