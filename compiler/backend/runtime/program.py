"""The names an emitted module's program part defines, at the values of an empty program.

The runtime reads them as module globals; here they exist so that the runtime modules import
and can be tested on their own (a test sets the ones it needs). The emitter never copies this
module: every emitted program part defines each name the runtime it carries reads.
"""
import optax

DATA_VARS: tuple = ()                 # the data variables, in declaration order
DATA_SHAPES: dict = {}                # variable -> per-example shape
PLAYERS: dict = {}                    # player -> the parameters it moves
SENSES: dict = {}                     # player -> "min" | "max" | "estimate"
MOVING: tuple = ()                    # the players that move a parameter
PROX: dict = {}                       # parameter -> (proximal map, weight), applied after each step
STEPS = 0                             # the default number of steps
BATCH = None                          # minibatch size (None: the whole data set)
LR = 1e-3                             # the step size written (or chosen)
SGA_LAMBDA = 1.0                      # symplectic gradient adjustment's lambda
CONSENSUS_GAMMA = 0.1                 # consensus optimisation's gamma
LIPSCHITZ_STEP = False                # step 1/L, L from the Hessian at the start
BACKTRACK = False                     # refuse a step that raises the objective
DETERMINISTIC = False                 # one player, no draws, no minibatches (the verdict's criterion)
EXACT_FIELD = False                   # no draws, no minibatches in any loss (a game must end at a zero of its field)
TOLERANCE = None                      # relative tolerance a run with no `steps` written stops at
COSINE = False                        # cosine decay of the step over the run
TAIL_AVERAGE = False                  # fit returns the mean iterate of the last tenth
IS_ESTIMATE = False                   # the objective is an estimate (`estimate`)
MAIN_PLAYER = "theta"                 # the player whose loss is the objective
OPTIMIZER = optax.sgd(LR)
LOSSES: dict = {}                     # player -> loss(params, key, batch)
JOINT = None                          # every player's loss in one function (a game), or None
OBJECTIVE = None                      # the objective's value(params, key, batch)
UPDATES: tuple = ()                   # (parameter, closed-form value(params, key, batch)), after each step
REPORTS: dict = {}                    # report name -> value(params, key, batch)
REPORT_DRAWS: dict = {}               # report name -> whether its value depends on the key
AS_WRITTEN = None                     # the objective as written: value(params, key, batch), or None
AS_WRITTEN_ESTIMATOR = None           # how AS_WRITTEN is computed: "exact", "monte_carlo", "iwae(K=100)", ...
AS_WRITTEN_REASON = None              # why AS_WRITTEN is None
AS_WRITTEN_DRAWS = False              # AS_WRITTEN depends on the key (averaged over keys)
OBJECTIVE_DRAWS = False               # OBJECTIVE depends on the key (averaged over keys)


def init(key):
    """The initial parameters."""
    return {}


def direction(params, key, batch):
    """The dynamics' direction and every player's loss."""
    return {}, {}


def step(state, key, batch):
    """One step of the dynamics."""
    return state, {}


def load_data():
    """The program's data."""
    return {}
