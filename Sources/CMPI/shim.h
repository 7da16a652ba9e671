// OpenMPI for Swift: MPI's handle macros (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are casts
// of global objects, which Swift does not import; these inline functions return them.
#include <mpi.h>

static inline MPI_Comm catlip_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype catlip_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype catlip_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype catlip_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype catlip_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op catlip_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op catlip_mpi_max(void) { return MPI_MAX; }
static inline void *catlip_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Errhandler catlip_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Request catlip_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *catlip_mpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
