"""`dtq dev`: the whole stack as local processes, embedded servers included."""
